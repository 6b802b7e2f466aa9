//! In-app delivery: a sent in-app message is kept in the outbox (the user's inbox is every in-app
//! message sent to them) and pushed at once to the user's connected clients (server-sent
//! events). A client that was not connected reads its inbox when it comes back.

use std::sync::Arc;

use whisperer_channels::{Channel, Message, Provider, Receipt, SendError};

use crate::config::ProviderFactory;

/// An in-app message on its way to connected clients.
#[derive(Clone, Debug)]
pub struct Published {
    pub workspace: String,
    pub person: String,
    pub message: Arc<Message>,
}

/// Fans sent in-app messages out to the clients connected now.
#[derive(Clone)]
pub struct InAppHub {
    tx: tokio::sync::broadcast::Sender<Published>,
}

impl Default for InAppHub {
    fn default() -> Self {
        InAppHub::new(4_096)
    }
}

impl InAppHub {
    /// A hub that keeps up to `capacity` messages for slow subscribers (a subscriber further
    /// behind misses them live and finds them in the inbox).
    pub fn new(capacity: usize) -> Self {
        InAppHub { tx: tokio::sync::broadcast::channel(capacity.max(1)).0 }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    fn publish(&self, message: &Message) {
        // Nobody connected is fine: the message waits in the inbox.
        let _ = self.tx.send(Published {
            workspace: message.workspace.clone(),
            person: message.person.clone(),
            message: Arc::new(message.clone()),
        });
    }
}

/// The in-app provider: publishing cannot fail, and the inbox is the record.
pub struct InAppProvider {
    name: String,
    hub: InAppHub,
}

#[async_trait::async_trait]
impl Provider for InAppProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::InApp
    }

    /// Clients drop a message id they already have, and the inbox holds each message once.
    fn deduplicates(&self) -> bool {
        true
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        self.hub.publish(message);
        Ok(Receipt { provider_message_id: Some(message.id.clone()) })
    }
}

impl ProviderFactory for InAppHub {
    fn in_app(&self, name: &str) -> Option<Arc<dyn Provider>> {
        Some(Arc::new(InAppProvider { name: name.to_owned(), hub: self.clone() }))
    }
}
