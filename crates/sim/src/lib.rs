//! A synthetic SaaS product with hidden ground truth: the test bench for everything in
//! Whisperer that learns.
//!
//! [`Simulation`] holds a population of users who sign up over a time window (after browsing the
//! site anonymously), and whose hidden state — habit, satisfaction, feature discovery — drives
//! sessions and Segment events in the daily and weekly rhythm of their own time zone. As the
//! state decays users churn; some come back. Interventions ([`Simulation::apply_intervention`])
//! change the hidden state according to a ground truth that stays inside the simulator; the
//! oracle methods ([`Simulation::oracle_churn_hazards`], [`Simulation::expected_uplift`]) read it
//! out so predictions and policies can be scored against the best possible answer.
//!
//! The clock is simulated: [`Simulation::advance_to`] streams every message up to a time, in
//! timestamp order, to a callback, so a caller can interleave its own decisions between steps.
//! Output is deterministic: the same [`SimConfig`] gives byte-identical messages, whatever the
//! step sizes, because each user draws from a random stream of their own (seed + user index).
//!
//! ```
//! use whisperer_sim::{SimConfig, Simulation};
//! use whisperer_core::Millis;
//!
//! let end = Millis(1_717_200_000_000);
//! let config = SimConfig { users: 50, seed: 7, start: Millis(end.0 - 10 * 86_400_000), end, ..SimConfig::default() };
//! let mut sim = Simulation::new(config).unwrap();
//! let mut lines = 0;
//! sim.run_to_end(|msg| {
//!     let _json = msg.to_json();
//!     lines += 1;
//! });
//! assert!(lines > 50);
//! let hazards = sim.oracle_churn_hazards(sim.now(), 14);
//! assert!(hazards.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
//! ```

mod clock;
mod contact;
mod intervention;
mod message;
mod model;
mod oracle;
mod population;
mod queue;
mod rng;
mod sim;

#[cfg(test)]
mod tests;

pub use contact::Contact;
pub use intervention::{Angle, Channel, DeliveryStatus, Intervention, Outcome, Uplift};
pub use message::{EVENT_NAMES, Message, MessageKind, index_of_user_id, user_id_of};
pub use oracle::auc;
pub use sim::{HiddenState, Simulation, Stats};

use whisperer_core::Millis;

/// Milliseconds in a day.
pub const DAY_MS: i64 = clock::DAY_MS;

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Users who sign up during the window.
    pub users: u32,
    /// Same seed and config, same output, byte for byte.
    pub seed: u64,
    /// The simulated clock starts here; sign-ups are spread over `[start, end)`.
    pub start: Millis,
    /// `run_to_end` stops here.
    pub end: Millis,
    /// Sign-ups per day at the end of the window relative to the start (a growing product);
    /// 1 is flat.
    pub signup_growth: f64,
}

impl Default for SimConfig {
    /// 10,000 users over the 120 days up to today's UTC midnight, seed 1.
    fn default() -> Self {
        let end = Millis(Millis::now().0.div_euclid(DAY_MS) * DAY_MS);
        Self { users: 10_000, seed: 1, start: Millis(end.0 - 120 * DAY_MS), end, signup_growth: 2.0 }
    }
}

impl SimConfig {
    /// The `days` days up to `end`.
    pub fn ending_at(end: Millis, days: u32) -> Self {
        Self { start: Millis(end.0 - i64::from(days) * DAY_MS), end, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("the simulation must end after it starts (start {start}, end {end})")]
    EmptyWindow { start: Millis, end: Millis },
    #[error("signup growth must be a positive number, not {0}")]
    InvalidGrowth(f64),
}
