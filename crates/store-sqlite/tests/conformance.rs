//! The storage conformance suite on the embedded SQLite backend.

use whisperer_store_sqlite::SqliteStore;

async fn fresh() -> Option<(SqliteStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    Some((SqliteStore::open(dir.path()).unwrap(), dir))
}

whisperer_store::conformance_suite!(fresh());
