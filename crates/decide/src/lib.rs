//! The decision engine: per user, which intervention helps — and whether to send anything.
//!
//! - [`campaign`]: definitions (TOML/JSON) checked field by field and compiled;
//! - [`audience`]: filter expressions bound to traits, features and scores;
//! - [`policy`]: Thompson sampling, linear Thompson sampling, fixed splits, ε-greedy, each with
//!   the exact propensity of its pick ([`prob`] integrates the choice probabilities);
//! - [`fatigue`]: caps, quiet hours, cool-downs, gaps, priorities, each check recorded;
//! - [`engine`]: one workspace's campaigns, decisions and the outcomes that teach them.
//!
//! Nothing here knows SQL or HTTP or the wall clock.

pub mod audience;
pub mod campaign;
pub mod context;
pub mod engine;
pub mod experiment;
pub mod fatigue;
pub mod linalg;
pub mod policy;
pub mod prob;
pub mod record;
pub mod report;
pub mod service;
pub mod spec;

pub use campaign::{Arm, Campaign, CampaignSpec, Channel, SendTime, Trigger};
pub use context::UserContext;
pub use engine::{DecideError, Decision, DecisionStatus, Draw, Engine, Explanation, Outcome, OutcomeKind};
pub use fatigue::{FATIGUE_SETTING, FatigueRules};
pub use policy::{PolicyConfig, PolicyState};
pub use spec::{FieldError, SpecErrors};
