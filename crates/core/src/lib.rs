//! Domain types and rules of Whisperer: workspaces, keys, events, identities and time.
//!
//! This crate does no I/O: no HTTP, no SQL, no files. Everything here is plain data and pure
//! functions so that every engine and every storage backend shares one meaning of the domain.

pub mod channel;
pub mod event;
pub mod identity;
pub mod keys;
pub mod text;
pub mod time;
pub mod tracking_plan;
pub mod workspace;

pub use channel::{Channel, MessageKind};
pub use event::{EventType, NewEvent, StoredEvent};
pub use identity::{IdKind, PersonId};
pub use keys::{ApiKey, KeyKind};
pub use time::Millis;
pub use workspace::{Workspace, WorkspaceId};
