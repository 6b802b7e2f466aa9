//! From a decision to a delivered message.
//!
//! - [`template`]: stored message templates (versioned per workspace), checked at save time.
//! - [`compose`]: a delivery job rendered for its user (locale, traits, features, scores),
//!   instrumented with [`tracking`] links and passed through the compliance gate.
//! - [`config`]: a workspace's providers per channel, rate limits, retries and breakers.
//! - [`sender`]: the outbox sender with leases, failover, retries and dead letters.

pub mod compose;
pub mod config;
pub mod feedback;
pub mod inapp;
pub mod sender;
pub mod template;
pub mod tracking;

pub use compose::{ComposeError, Composer, UserData, WorkspaceContent};
pub use config::{DeliveryConfig, ProviderConfig, ProviderFactory};
pub use inapp::{InAppHub, Published};
pub use sender::{Round, Sender, SenderConfig, SenderError};
pub use template::{CompiledTemplate, TemplateDefinition, TemplateProblem};
pub use tracking::{Claims, Links, TrackingKey};
