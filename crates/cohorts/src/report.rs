//! The result of a retention query: plain data, for the API and the command line to render.

use whisperer_core::Millis;

use crate::period::Period;
use crate::query::Behavior;

/// Retention matrices, one per group of persons.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    pub period: Period,
    /// Columns of every matrix: periods since first activity 0, 1, … `columns - 1`.
    pub columns: usize,
    pub split: Option<String>,
    pub behavior: Option<Behavior>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    /// The newest activity in the log: periods after the one it falls in are not observed yet.
    pub as_of: Option<Millis>,
    /// Persons in the report (first active within `from`..`to`).
    pub persons: u64,
    /// Events read from the log.
    pub events_scanned: u64,
    /// Trait values that had no group of their own and make up "(other)".
    pub other_values: u64,
    pub groups: Vec<Group>,
}

/// Which trait value a group stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TraitGroup {
    Value(String),
    /// Persons without the trait (never set, or last set to `null`).
    None,
    /// Persons whose value is not among the largest groups.
    Other,
}

impl TraitGroup {
    pub fn label(&self) -> &str {
        match self {
            TraitGroup::Value(v) => v,
            TraitGroup::None => "(none)",
            TraitGroup::Other => "(other)",
        }
    }
}

/// The persons of one trait value and/or one side of a behaviour, with their matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// `None` without a split.
    pub trait_group: Option<TraitGroup>,
    /// `None` without a behaviour; else whether these persons did it in time.
    pub did_behavior: Option<bool>,
    pub persons: u64,
    /// One row per cohort, oldest first.
    pub cohorts: Vec<CohortRow>,
    /// The group's retention curve: per column, the active persons over the persons of the
    /// cohorts for which that column is observed; `None` where no cohort is.
    pub curve: Vec<Option<Cell>>,
}

/// The persons first active in one period, and how many were active in each period after.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortRow {
    /// Period index (see [`Period::index`]).
    pub index: i32,
    pub start: Millis,
    pub label: String,
    pub size: u64,
    /// Per column; `None` for periods after the newest activity (not observed yet).
    pub cells: Vec<Option<Cell>>,
}

/// One cell: `active` of `persons`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub active: u64,
    pub persons: u64,
    /// `active / persons`, 0 when there are no persons.
    pub fraction: f64,
}

impl Cell {
    pub fn new(active: u64, persons: u64) -> Self {
        let fraction = if persons == 0 { 0.0 } else { active as f64 / persons as f64 };
        Self { active, persons, fraction }
    }
}

impl Retention {
    /// A group's name for people: `plan = pro`, `did Invite Sent within 7d`, or both.
    pub fn group_label(&self, group: &Group) -> String {
        let mut parts = Vec::new();
        if let (Some(split), Some(t)) = (&self.split, &group.trait_group) {
            parts.push(match t {
                TraitGroup::Value(v) => format!("{split} = {v}"),
                other => format!("{split} {}", other.label()),
            });
        }
        if let (Some(b), Some(did)) = (&self.behavior, group.did_behavior) {
            let verb = if did { "did" } else { "did not do" };
            parts.push(format!("{verb} {} within {}d", b.event, b.within_days));
        }
        if parts.is_empty() { "all".to_owned() } else { parts.join(", ") }
    }
}
