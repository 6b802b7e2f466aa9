//! Per-workspace daily budgets of tokens and cost (UTC days). A call reserves its estimate
//! before it is made, so calls in flight count against the limit too, and settles with what
//! the provider reported after. State is in memory; the caller persists it through
//! [`Budget::snapshot`] and [`Budget::restore`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use whisperer_core::WorkspaceId;

use crate::error::BudgetExceeded;

/// Daily limits; `None` is unlimited, `Some(0)` turns generation off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimits {
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Millionths of a US dollar.
    #[serde(default)]
    pub cost_micros_per_day: Option<u64>,
}

/// `[llm.budget]`: limits for every workspace, and overrides for some.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(default)]
    pub default: BudgetLimits,
    #[serde(default)]
    pub workspaces: BTreeMap<WorkspaceId, BudgetLimits>,
}

/// Tokens and cost, spent or estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub tokens: u64,
    pub cost_micros: u64,
}

impl Spend {
    fn add(self, other: Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_add(other.tokens),
            cost_micros: self.cost_micros.saturating_add(other.cost_micros),
        }
    }

    fn sub(self, other: Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_sub(other.tokens),
            cost_micros: self.cost_micros.saturating_sub(other.cost_micros),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Day {
    day: NaiveDate,
    spent: Spend,
    /// Estimates of calls made but not yet settled.
    reserved: Spend,
}

/// An estimate held against a workspace's day until [`Budget::settle`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation holds budget until it is settled"]
pub struct Reservation {
    workspace: WorkspaceId,
    day: NaiveDate,
    amount: Spend,
}

/// One workspace's spending on one day, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySpend {
    pub workspace: WorkspaceId,
    pub day: NaiveDate,
    pub tokens: u64,
    pub cost_micros: u64,
}

/// The counters to persist; calls in flight are not included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    pub days: Vec<DaySpend>,
}

/// The daily counters of every workspace.
#[derive(Debug, Default)]
pub struct Budget {
    config: BudgetConfig,
    days: HashMap<WorkspaceId, Day>,
}

impl Budget {
    pub fn new(config: BudgetConfig) -> Budget {
        Budget { config, days: HashMap::new() }
    }

    /// The limits that apply to `workspace`.
    pub fn limits(&self, workspace: &WorkspaceId) -> BudgetLimits {
        self.config.workspaces.get(workspace).copied().unwrap_or(self.config.default)
    }

    fn today(&mut self, workspace: &WorkspaceId, now: DateTime<Utc>) -> &mut Day {
        let today = now.date_naive();
        let day = self.days.entry(workspace.clone()).or_insert(Day {
            day: today,
            spent: Spend::default(),
            reserved: Spend::default(),
        });
        if day.day != today {
            // A new UTC day starts from zero; reservations from the old day are settled against
            // nothing (see `settle`).
            *day = Day { day: today, spent: Spend::default(), reserved: Spend::default() };
        }
        day
    }

    /// Holds `estimate` against today's limits, or says which limit it would break.
    pub fn reserve(
        &mut self,
        workspace: &WorkspaceId,
        estimate: Spend,
        now: DateTime<Utc>,
    ) -> Result<Reservation, BudgetExceeded> {
        let limits = self.limits(workspace);
        let day = self.today(workspace, now);
        let used = day.spent.add(day.reserved);
        let checks = [
            ("tokens", used.tokens, estimate.tokens, limits.tokens_per_day),
            ("cost_micros", used.cost_micros, estimate.cost_micros, limits.cost_micros_per_day),
        ];
        for (what, used, needed, limit) in checks {
            if let Some(limit) = limit
                && used.saturating_add(needed) > limit
            {
                return Err(BudgetExceeded {
                    workspace: workspace.to_string(),
                    what,
                    day: day.day,
                    used,
                    needed,
                    limit,
                });
            }
        }
        day.reserved = day.reserved.add(estimate);
        Ok(Reservation { workspace: workspace.clone(), day: day.day, amount: estimate })
    }

    /// Releases the reservation and charges what the call really used (zero when it failed).
    pub fn settle(&mut self, reservation: Reservation, actual: Spend, now: DateTime<Utc>) {
        let day = self.today(&reservation.workspace, now);
        if day.day == reservation.day {
            day.reserved = day.reserved.sub(reservation.amount);
        }
        day.spent = day.spent.add(actual);
    }

    /// What `workspace` has spent today (settled calls only).
    pub fn spent(&self, workspace: &WorkspaceId, now: DateTime<Utc>) -> Spend {
        match self.days.get(workspace) {
            Some(day) if day.day == now.date_naive() => day.spent,
            _ => Spend::default(),
        }
    }

    /// The settled counters, to persist.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let mut days: Vec<DaySpend> = self
            .days
            .iter()
            .map(|(workspace, day)| DaySpend {
                workspace: workspace.clone(),
                day: day.day,
                tokens: day.spent.tokens,
                cost_micros: day.spent.cost_micros,
            })
            .collect();
        days.sort_by(|a, b| a.workspace.cmp(&b.workspace));
        BudgetSnapshot { days }
    }

    /// Replaces the counters with persisted ones (at startup, before any call). A workspace
    /// listed twice keeps its latest day.
    pub fn restore(&mut self, snapshot: BudgetSnapshot) {
        self.days.clear();
        for entry in snapshot.days {
            let spent = Spend { tokens: entry.tokens, cost_micros: entry.cost_micros };
            let day = Day { day: entry.day, spent, reserved: Spend::default() };
            match self.days.get(&entry.workspace) {
                Some(existing) if existing.day >= entry.day => {}
                _ => {
                    self.days.insert(entry.workspace, day);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ws(n: u8) -> WorkspaceId {
        WorkspaceId::parse(&format!("ws_{:016x}", n)).unwrap()
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, day, hour, 0, 0).unwrap()
    }

    fn spend(tokens: u64, cost_micros: u64) -> Spend {
        Spend { tokens, cost_micros }
    }

    #[test]
    fn reservations_count_until_settled_and_limits_refuse_the_excess() {
        let config = BudgetConfig {
            default: BudgetLimits { tokens_per_day: Some(1000), cost_micros_per_day: None },
            workspaces: BTreeMap::new(),
        };
        let mut budget = Budget::new(config);
        let a = budget.reserve(&ws(1), spend(600, 0), at(1, 9)).unwrap();
        let e = budget.reserve(&ws(1), spend(600, 0), at(1, 9)).unwrap_err();
        assert_eq!((e.what, e.used, e.needed, e.limit), ("tokens", 600, 600, 1000));
        assert!(budget.reserve(&ws(2), spend(600, 0), at(1, 9)).is_ok(), "other workspaces have their own");
        budget.settle(a, spend(100, 0), at(1, 9));
        assert_eq!(budget.spent(&ws(1), at(1, 10)), spend(100, 0));
        let b = budget.reserve(&ws(1), spend(900, 0), at(1, 10)).unwrap();
        budget.settle(b, spend(900, 0), at(1, 10));
        assert!(budget.reserve(&ws(1), spend(1, 0), at(1, 23)).is_err(), "1000 spent");
        assert!(budget.reserve(&ws(1), spend(1000, 0), at(2, 0)).is_ok(), "a new utc day");
    }

    #[test]
    fn cost_limits_and_overrides_apply_per_workspace() {
        let mut workspaces = BTreeMap::new();
        workspaces.insert(ws(2), BudgetLimits { tokens_per_day: None, cost_micros_per_day: Some(0) });
        let config = BudgetConfig {
            default: BudgetLimits { tokens_per_day: None, cost_micros_per_day: Some(5_000) },
            workspaces,
        };
        let mut budget = Budget::new(config);
        let e = budget.reserve(&ws(1), spend(10, 5_001), at(1, 0)).unwrap_err();
        assert_eq!(e.what, "cost_micros");
        assert!(e.to_string().contains("over its daily cost_micros budget for 2025-03-01"), "{e}");
        assert!(budget.reserve(&ws(2), spend(0, 1), at(1, 0)).is_err(), "zero turns generation off");
    }

    #[test]
    fn a_call_settled_after_midnight_charges_the_new_day_without_unreserving_it() {
        let config = BudgetConfig {
            default: BudgetLimits { tokens_per_day: Some(1000), cost_micros_per_day: None },
            workspaces: BTreeMap::new(),
        };
        let mut budget = Budget::new(config);
        let late = budget.reserve(&ws(1), spend(500, 0), at(1, 23)).unwrap();
        let early = budget.reserve(&ws(1), spend(200, 0), at(2, 0)).unwrap();
        budget.settle(late, spend(300, 0), at(2, 0));
        budget.settle(early, spend(200, 0), at(2, 0));
        assert_eq!(budget.spent(&ws(1), at(2, 1)), spend(500, 0));
        assert!(budget.reserve(&ws(1), spend(500, 0), at(2, 1)).is_ok(), "nothing left reserved");
    }

    #[test]
    fn snapshots_round_trip_through_serde() {
        let mut budget = Budget::new(BudgetConfig::default());
        let r = budget.reserve(&ws(1), spend(10, 10), at(1, 0)).unwrap();
        budget.settle(r, spend(42, 7), at(1, 0));
        let _in_flight = budget.reserve(&ws(1), spend(99, 99), at(1, 0)).unwrap();
        let json = serde_json::to_string(&budget.snapshot()).unwrap();
        let mut restored = Budget::new(BudgetConfig::default());
        restored.restore(serde_json::from_str(&json).unwrap());
        assert_eq!(restored.spent(&ws(1), at(1, 12)), spend(42, 7), "reservations are not persisted");
        assert_eq!(restored.spent(&ws(1), at(2, 0)), Spend::default(), "yesterday's counters do not count");
        assert_eq!(restored.snapshot(), budget.snapshot());
    }
}
