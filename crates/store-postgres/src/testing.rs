//! Test support for any crate whose tests run on PostgreSQL: the test database from
//! `WHISPERER_TEST_POSTGRES_URL` (a clear skip, or a failure under
//! `WHISPERER_REQUIRE_SERVICES=1`, when it is not set), and a fresh store in a schema of its own
//! that is dropped when the test ends.

use crate::PgStore;
use tokio_postgres::NoTls;

pub const URL_VAR: &str = "WHISPERER_TEST_POSTGRES_URL";

/// The test database, or `None` (after saying so) when none is configured.
pub fn url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("WHISPERER_REQUIRE_SERVICES").as_deref() == Ok("1") => panic!(
            "WHISPERER_REQUIRE_SERVICES=1 but {URL_VAR} is not set; \
             set it to a database these tests may use, e.g. postgres://postgres@127.0.0.1:5432/test"
        ),
        _ => {
            eprintln!("skipping: {URL_VAR} is not set");
            None
        }
    }
}

/// A randomly named schema, dropped with everything in it when this value is.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), name: format!("t_{:016x}", rand::random::<u64>()) }
    }

    /// A client outside any store, to look at the schema directly.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.expect("connect to postgresql");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs on the test's runtime, which cannot wait on a future from inside; a thread
        // with a runtime of its own can.
        let dropped = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await?;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// A fresh, empty store in a new schema, or `None` when no database is configured.
pub async fn fresh() -> Option<(PgStore, Schema)> {
    let url = url()?;
    let schema = Schema::new(&url);
    let store = PgStore::connect_in_schema(&url, &schema.name).await.expect("open the postgresql store");
    Some((store, schema))
}
