//! Monthly partitions of `events`, created when the first event of a month arrives.
//!
//! A partition is created in a short transaction of its own, before the append transaction
//! starts: `CREATE TABLE ... PARTITION OF` takes an exclusive lock on `events`, and taking it
//! inside an append that already holds locks could deadlock with other appends. An advisory lock
//! serialises creators, because two concurrent `CREATE TABLE IF NOT EXISTS` of one name can still
//! collide in the catalog. Which months exist is remembered per store, so the hot path issues no
//! DDL at all once a month has been seen.

use chrono::{DateTime, Datelike, Utc};
use deadpool_postgres::Client;
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use whisperer_store::{Result, StoreError};

use crate::{LOCK_PARTITION, db_err};

/// A calendar month in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    /// The month of `at`; `None` outside the years 1 to 9999, which partition bounds (written as
    /// ISO dates) and partition names cannot express.
    pub fn of(at: DateTime<Utc>) -> Option<Self> {
        let year = at.year();
        (1..=9999).contains(&year).then(|| Self { year, month: at.month() })
    }

    fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { month: self.month + 1, ..self }
        }
    }

    pub fn table_name(self) -> String {
        format!("events_p{:04}_{:02}", self.year, self.month)
    }

    fn start_literal(self) -> String {
        format!("'{:04}-{:02}-01 00:00:00+00'", self.year, self.month)
    }

    pub fn create_sql(self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
            self.table_name(),
            self.start_literal(),
            self.next().start_literal()
        )
    }
}

/// Months whose partition this store has created or found.
#[derive(Default)]
pub struct Known(Mutex<HashSet<Month>>);

impl Known {
    /// The months of `wanted` not known to exist yet.
    fn missing(&self, wanted: &BTreeSet<Month>) -> Vec<Month> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        wanted.iter().filter(|m| !known.contains(m)).copied().collect()
    }

    fn add(&self, months: &[Month]) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(months.iter().copied());
    }

    /// Forgets everything, after a partition turned out to be gone (dropped by retention, say).
    pub fn forget(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Makes sure every month of `wanted` has its partition.
    pub async fn ensure(&self, client: &mut Client, wanted: &BTreeSet<Month>) -> Result<()> {
        let missing = self.missing(wanted);
        if missing.is_empty() {
            return Ok(());
        }
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", &[&LOCK_PARTITION])
            .await
            .map_err(db_err)?;
        for month in &missing {
            tx.batch_execute(&month.create_sql()).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot create partition {}: {e}", month.table_name()))
            })?;
        }
        tx.commit().await.map_err(db_err)?;
        tracing::debug!(partitions = ?missing.iter().map(|m| m.table_name()).collect::<Vec<_>>(), "events partitions ready");
        self.add(&missing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(ms: i64) -> Option<Month> {
        Month::of(DateTime::from_timestamp_millis(ms).unwrap())
    }

    #[test]
    fn months_and_bounds() {
        let m = month(1_704_164_645_000).unwrap(); // 2024-01-02
        assert_eq!(m.table_name(), "events_p2024_01");
        assert_eq!(
            m.create_sql(),
            "CREATE TABLE IF NOT EXISTS events_p2024_01 PARTITION OF events \
             FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')"
        );
        let december = Month { year: 2023, month: 12 };
        assert_eq!(december.next(), Month { year: 2024, month: 1 });
        // The last millisecond of a month belongs to it, the next one to the next month.
        assert_eq!(month(1_704_067_199_999), Some(december));
        assert_eq!(month(1_704_067_200_000), Some(Month { year: 2024, month: 1 }));
    }

    #[test]
    fn years_outside_the_calendar_have_no_partition() {
        assert!(month(-62_135_596_800_001).is_none(), "before year 1");
        assert!(month(253_402_300_799_999).is_some(), "end of 9999");
        assert!(month(253_402_300_800_000).is_none(), "year 10000");
    }
}
