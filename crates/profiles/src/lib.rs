//! Live profiles: what Whisperer knows about every user, updated as each event arrives.
//!
//! - [`observation`] reads the few fields a profile needs from a stored event;
//! - [`profile`] folds them into fixed-size aggregates (O(1) per event) and answers features
//!   for any instant;
//! - [`score`] turns features into the engagement score, [`lifecycle`] into a stage;
//! - [`tracker`] is the per-event step all paths share (fold, then move the stage);
//! - [`engine`] consumes the durable log, keeps every profile in memory, persists them with
//!   its checkpoint, and writes a `Lifecycle Stage Changed` event on every stage change.
//!
//! Nothing here knows SQL or HTTP: the engine talks to the [`whisperer_store::Store`] trait.

pub mod dictionary;
pub mod engine;
pub mod lifecycle;
pub mod observation;
pub mod profile;
pub mod score;
pub mod table;
pub mod tracker;

pub use dictionary::Dictionary;
pub use engine::{EngineConfig, ProfileEngine};
pub use lifecycle::{LIFECYCLE_SETTING, LifecycleConfig, Stage};
pub use observation::{Channel, Observation, observe};
pub use profile::{Features, Profile};
pub use score::Engagement;
pub use table::ProfileTable;
pub use tracker::{Tracker, Transition};
