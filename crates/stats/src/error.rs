//! The one error type of the crate: every invalid input is refused with a reason instead of
//! turning into a NaN somewhere downstream.

use thiserror::Error;

/// Why a statistic could not be computed from its input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// A group had no observations (`n = 0`).
    #[error("{what} has no observations")]
    Empty { what: &'static str },
    /// More successes than trials.
    #[error("{what}: successes ({successes}) exceed trials ({trials})")]
    SuccessesExceedTrials { what: &'static str, successes: u64, trials: u64 },
    /// A probability-like parameter (confidence level, alpha) outside the open interval (0, 1).
    #[error("{what} must be in (0, 1), got {value}")]
    NotInUnitInterval { what: &'static str, value: f64 },
    /// A NaN or infinite input.
    #[error("{what} must be finite, got {value}")]
    NotFinite { what: &'static str, value: f64 },
    /// A parameter outside its domain (`expected` says which).
    #[error("{what} must be {expected}, got {value}")]
    OutOfDomain { what: &'static str, expected: &'static str, value: f64 },
    /// Too few observations for the statistic (a sample variance needs two).
    #[error("{what} needs at least {needed} observations, got {got}")]
    TooFew { what: &'static str, needed: u64, got: u64 },
    /// Two slices that must pair up element by element have different lengths.
    #[error("{left} has {left_len} entries but {right} has {right_len}")]
    LengthMismatch { left: &'static str, left_len: usize, right: &'static str, right_len: usize },
    /// Welch's t is undefined when neither group varies: the standard error is zero.
    #[error("both groups have zero variance, so the t statistic is undefined")]
    ZeroVariance,
    /// Cumulative counts given to a sequential test went down between looks.
    #[error("{what} went down from {previous} to {current}; looks take cumulative counts")]
    NotCumulative { what: &'static str, previous: u64, current: u64 },
    /// One logged round of an off-policy evaluation is invalid.
    #[error("round {index}: {field} must be {expected}, got {value}")]
    InvalidRound { index: usize, field: &'static str, expected: &'static str, value: f64 },
    /// The target policy gives zero probability to every logged action, so self-normalised
    /// importance sampling has nothing to normalise by.
    #[error("the target policy gives zero probability to every logged action")]
    NoOverlap,
}

/// Result with [`StatsError`].
pub type Result<T, E = StatsError> = std::result::Result<T, E>;

pub(crate) fn check_confidence(what: &'static str, value: f64) -> Result<()> {
    if value > 0.0 && value < 1.0 { Ok(()) } else { Err(StatsError::NotInUnitInterval { what, value }) }
}

pub(crate) fn check_counts(what: &'static str, successes: u64, trials: u64) -> Result<()> {
    if trials == 0 {
        return Err(StatsError::Empty { what });
    }
    if successes > trials {
        return Err(StatsError::SuccessesExceedTrials { what, successes, trials });
    }
    Ok(())
}

pub(crate) fn check_finite(what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() { Ok(()) } else { Err(StatsError::NotFinite { what, value }) }
}
