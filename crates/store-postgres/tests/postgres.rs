//! What the conformance suite cannot see: schemas, partitions, several processes sharing one
//! database, PostgreSQL's limits on text, and parity with the SQLite store on random traffic.

mod common;

use common::{Schema, fresh, url};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::IdKind;
use whisperer_core::{EventType, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_store::{Store, StoreError};
use whisperer_store_postgres::PgStore;
use whisperer_store_sqlite::SqliteStore;

const T0: i64 = 1_700_000_000_000;
/// 2019-06-15 and 2026-02-10, in milliseconds.
const JUNE_2019: i64 = 1_560_556_800_000;
const FEB_2026: i64 = 1_770_681_600_000;

async fn workspace(store: &impl Store) -> WorkspaceId {
    let ws = Workspace { id: WorkspaceId::generate(), name: "Acme".into(), created_at: Millis(T0) };
    store.create_workspace(&ws, &[]).await.unwrap();
    ws.id
}

fn event(ws: &WorkspaceId, message_id: &str, user: Option<&str>, anon: Option<&str>, at: i64) -> NewEvent {
    NewEvent {
        workspace_id: ws.clone(),
        message_id: message_id.into(),
        event_type: EventType::Track,
        name: Some("Item Viewed".into()),
        user_id: user.map(Into::into),
        anonymous_id: anon.map(Into::into),
        previous_id: None,
        timestamp: Millis(at),
        received_at: Millis(at + 5),
        raw:
            json!({"type": "track", "event": "Item Viewed", "messageId": message_id, "properties": {"n": 1}})
                .to_string(),
        enrichment: "{}".into(),
    }
}

#[tokio::test]
async fn schemas_do_not_see_each_other() {
    let Some(url) = url() else { return };
    let (s1, s2) = (Schema::new(&url), Schema::new(&url));
    let a = PgStore::connect_in_schema(&url, &s1.name).await.unwrap();
    let b = PgStore::connect_in_schema(&url, &s2.name).await.unwrap();
    let ws = workspace(&a).await;
    a.append(vec![event(&ws, "m1", Some("u1"), None, T0)], Millis(0)).await.unwrap();
    assert_eq!(a.list_workspaces().await.unwrap().len(), 1);
    assert!(b.list_workspaces().await.unwrap().is_empty());
    assert!(b.events_after(&ws, 0, 10).await.unwrap().is_empty());
    assert!(b.find_person(&ws, IdKind::User, "u1").await.unwrap().is_none());
    // The same message id in the other schema is new there.
    let out = b.append(vec![event(&ws, "m1", Some("u1"), None, T0)], Millis(0)).await.unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
}

#[tokio::test]
async fn one_batch_may_span_workspaces() {
    let Some((store, _schema)) = fresh().await else { return };
    let (a, b) = (workspace(&store).await, workspace(&store).await);
    let batch = [
        event(&a, "m1", Some("u1"), Some("x"), T0),
        event(&b, "m1", Some("u1"), Some("x"), T0),
        event(&a, "m1", Some("u1"), Some("x"), T0 + 1),
    ];
    let out = store.append(batch.to_vec(), Millis(0)).await.unwrap();
    assert!(matches!(
        out[..],
        [AppendOutcome::Stored { .. }, AppendOutcome::Stored { .. }, AppendOutcome::Duplicate]
    ));
    let pa = store.find_person(&a, IdKind::Anonymous, "x").await.unwrap().unwrap();
    let pb = store.find_person(&b, IdKind::Anonymous, "x").await.unwrap().unwrap();
    assert_ne!(pa.id, pb.id);
    assert_eq!(store.person_events(&a, pa.id, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.person_events(&b, pb.id, None, 10).await.unwrap()[0].event.workspace_id, b);
}

#[tokio::test]
async fn rejects_schema_names_that_need_quoting() {
    let err =
        PgStore::connect_in_schema("postgres://nobody@127.0.0.1:1/none", "Bad-Name").await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let err = PgStore::connect("postgres://nobody@127.0.0.1:1/none").await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let err = PgStore::connect("not a url").await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn each_month_gets_a_partition_on_demand() {
    let Some((store, schema)) = fresh().await else { return };
    let ws = workspace(&store).await;
    let batch =
        [event(&ws, "old", Some("u1"), None, JUNE_2019), event(&ws, "new", Some("u1"), None, FEB_2026)];
    store.append(batch.to_vec(), Millis(0)).await.unwrap();
    // A second batch in known months issues no DDL and still lands.
    store.append(vec![event(&ws, "again", Some("u1"), None, JUNE_2019 + 1)], Millis(0)).await.unwrap();

    let client = schema.client().await;
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = $1 AND p.relname = 'events' ORDER BY 1",
            &[&schema.name],
        )
        .await
        .unwrap();
    let partitions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(partitions, ["events_p2019_06", "events_p2026_02"]);
    let placed = client
        .query(
            &format!("SELECT tableoid::regclass::text, message_id FROM {}.events ORDER BY seq", schema.name),
            &[],
        )
        .await
        .unwrap();
    let placed: Vec<(String, String)> = placed.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        placed,
        [
            (format!("{}.events_p2019_06", schema.name), "old".to_string()),
            (format!("{}.events_p2026_02", schema.name), "new".to_string()),
            (format!("{}.events_p2019_06", schema.name), "again".to_string()),
        ]
    );

    let back = store.events_after(&ws, 0, 10).await.unwrap();
    let times: Vec<_> = back.iter().map(|e| e.event.timestamp.0).collect();
    assert_eq!(times, [JUNE_2019, FEB_2026, JUNE_2019 + 1]);
    let person = store.find_person(&ws, IdKind::User, "u1").await.unwrap().unwrap();
    let newest: Vec<_> = store
        .person_events(&ws, person.id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.message_id)
        .collect();
    assert_eq!(newest, ["new", "again", "old"], "newest first across partitions");
}

#[tokio::test]
async fn a_dropped_partition_is_recreated() {
    let Some((store, schema)) = fresh().await else { return };
    let ws = workspace(&store).await;
    store.append(vec![event(&ws, "a", Some("u"), None, JUNE_2019)], Millis(0)).await.unwrap();
    // Retention dropping a month behind this store's back.
    schema
        .client()
        .await
        .batch_execute(&format!("DROP TABLE {}.events_p2019_06", schema.name))
        .await
        .unwrap();
    let out = store.append(vec![event(&ws, "b", Some("u"), None, JUNE_2019)], Millis(0)).await.unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    assert_eq!(store.events_after(&ws, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn json_that_jsonb_refuses_is_stored_exactly() {
    let Some((store, schema)) = fresh().await else { return };
    let ws = workspace(&store).await;
    let mut e = event(&ws, "m1", Some("u1"), None, T0);
    e.raw = r#"{"type":"track","properties":{"note":"a\u0000b"}, "messageId":"m1"}"#.into();
    store.append(vec![e.clone()], Millis(0)).await.unwrap();
    assert_eq!(store.events_after(&ws, 0, 10).await.unwrap()[0].event, e);
    let client = schema.client().await;
    let row = client
        .query_one(&format!("SELECT properties->>'note' FROM {}.events", schema.name), &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a\u{FFFD}b");
}

#[tokio::test]
async fn text_postgresql_cannot_hold_is_a_conflict() {
    let Some((store, _schema)) = fresh().await else { return };
    let ws = workspace(&store).await;
    let err = store.append(vec![event(&ws, "m1", Some("u\0x"), None, T0)], Millis(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .append(vec![event(&ws, "m2", Some("u"), None, -70_000_000_000_000)], Millis(0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(store.events_after(&ws, 0, 10).await.unwrap().is_empty());
}

/// Two processes starting on one fresh database, then writing the same new user and a new
/// month at the same time: migrations, partitions and identities must all come out single.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_share_one_schema() {
    let Some(url) = url() else { return };
    let schema = Schema::new(&url);
    let (a, b) = tokio::join!(
        PgStore::connect_in_schema(&url, &schema.name),
        PgStore::connect_in_schema(&url, &schema.name)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ws = workspace(&a).await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move {
            let batch = [event(&ws, &format!("m{n}"), Some("u1"), Some(&format!("anon-{n}")), FEB_2026 + n)];
            store.append(batch.to_vec(), Millis(0)).await
        }));
    }
    for task in tasks {
        let out = task.await.unwrap().unwrap();
        assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    }
    let person = b.find_person(&ws, IdKind::User, "u1").await.unwrap().unwrap();
    assert_eq!(person.identities.len(), 17, "one person with the user id and every anonymous id");
    let events = a.person_events(&ws, person.id, None, 100).await.unwrap();
    assert_eq!(events.len(), 16);
}

/// A consumer that reads `events_after` its last seq while writers commit must never skip an
/// event: seqs of a workspace become visible in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_readers_never_skip_an_event() {
    let Some((store, _schema)) = fresh().await else { return };
    let ws = workspace(&store).await;
    let (writers, batches) = (4, 25);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, ws, finished) = (store.clone(), ws.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..batches {
                let batch: Vec<_> = (0..3)
                    .map(|i| event(&ws, &format!("w{w}-b{b}-{i}"), Some(&format!("u{w}")), None, T0 + b))
                    .collect();
                store.append(batch.to_vec(), Millis(0)).await.unwrap();
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let mut seen = HashSet::new();
    let mut last = 0;
    loop {
        // Read after checking, so the last pass starts once every write has committed.
        let all_written = finished.load(Ordering::SeqCst) == writers;
        let page = store.events_after(&ws, last, 50).await.unwrap();
        if page.is_empty() && all_written {
            break;
        }
        for e in page {
            assert!(e.seq > last);
            last = e.seq;
            seen.insert(e.event.message_id);
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Whatever the reader missed while following the log would never come back after `last`.
    assert_eq!(seen.len(), writers * batches as usize * 3, "the reader skipped events");
}

/// Random batches through both backends must give the same outcomes, persons and histories.
#[tokio::test]
async fn behaves_like_sqlite_on_random_traffic() {
    let Some((pg, _schema)) = fresh().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).unwrap();
    for seed in 0..6 {
        let ws = Workspace { id: WorkspaceId::generate(), name: format!("w{seed}"), created_at: Millis(T0) };
        pg.create_workspace(&ws, &[]).await.unwrap();
        sqlite.create_workspace(&ws, &[]).await.unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut clock = T0;
        for round in 0..30 {
            clock += rng.random_range(0..40);
            let size = rng.random_range(1..8);
            let batch: Vec<_> =
                (0..size).map(|i| random_event(&mut rng, &ws.id, clock, round * 10 + i)).collect();
            let since = Millis(clock - rng.random_range(0..80));
            let want = sqlite.append(batch.clone(), since).await.unwrap();
            let got = pg.append(batch.clone(), since).await.unwrap();
            let stored = |o: &[AppendOutcome]| -> Vec<bool> {
                o.iter().map(|o| matches!(o, AppendOutcome::Stored { .. })).collect()
            };
            assert_eq!(stored(&got), stored(&want), "seed {seed} round {round}: {batch:#?}");
        }
        compare(&sqlite, &pg, &ws.id, seed).await;
    }
}

fn random_event(rng: &mut StdRng, ws: &WorkspaceId, clock: i64, n: usize) -> NewEvent {
    let pick = |rng: &mut StdRng, prefix: &str, count: usize, p_none: f64| {
        (!rng.random_bool(p_none)).then(|| format!("{prefix}{}", rng.random_range(0..count)))
    };
    let event_type =
        [EventType::Track, EventType::Track, EventType::Identify, EventType::Alias, EventType::Page]
            [rng.random_range(0..5)];
    let mut user_id = pick(rng, "u", 5, 0.4);
    let anonymous_id = pick(rng, "a", 8, 0.3);
    let previous_id = (event_type == EventType::Alias).then(|| {
        if rng.random_bool(0.5) {
            format!("u{}", rng.random_range(0..5))
        } else {
            format!("a{}", rng.random_range(0..8))
        }
    });
    if event_type == EventType::Alias && user_id.is_none() {
        user_id = Some(format!("u{}", rng.random_range(0..5)));
    }
    let message_id =
        if rng.random_bool(0.3) { format!("dup{}", rng.random_range(0..6)) } else { format!("m{n}") };
    let plan = ["free", "pro"][rng.random_range(0..2)];
    let traits = json!({"plan": plan, "n": n});
    NewEvent {
        workspace_id: ws.clone(),
        message_id: message_id.clone(),
        event_type,
        name: matches!(event_type, EventType::Track | EventType::Page)
            .then(|| format!("E{}", rng.random_range(0..3))),
        user_id,
        anonymous_id,
        previous_id,
        // Spread over two months, so partitions are exercised too.
        timestamp: Millis(T0 + rng.random_range(0..60 * 86_400_000)),
        received_at: Millis(clock + rng.random_range(0..20)),
        raw: if event_type == EventType::Identify && rng.random_bool(0.3) {
            json!({"type": "identify", "messageId": message_id, "context": {"traits": traits}}).to_string()
        } else {
            json!({"type": event_type.as_str(), "messageId": message_id, "traits": traits}).to_string()
        },
        enrichment: json!({"n": n}).to_string(),
    }
}

async fn compare(sqlite: &SqliteStore, pg: &PgStore, ws: &WorkspaceId, seed: u64) {
    let want = sqlite.events_after(ws, 0, 10_000).await.unwrap();
    let got = pg.events_after(ws, 0, 10_000).await.unwrap();
    let log = |events: &[whisperer_core::StoredEvent]| -> Vec<(NewEvent, bool)> {
        events.iter().map(|e| (e.event.clone(), e.person_id == 0)).collect()
    };
    assert_eq!(log(&got), log(&want), "seed {seed}: log");

    let ids = (0..5)
        .map(|n| (IdKind::User, format!("u{n}")))
        .chain((0..8).map(|n| (IdKind::Anonymous, format!("a{n}"))));
    for (kind, value) in ids {
        let want = sqlite.find_person(ws, kind, &value).await.unwrap();
        let got = pg.find_person(ws, kind, &value).await.unwrap();
        let (Some(want), Some(got)) = (want.clone(), got.clone()) else {
            assert_eq!(got.is_some(), want.is_some(), "seed {seed}: person of {value}");
            continue;
        };
        assert_eq!(
            (&got.user_id, &got.identities),
            (&want.user_id, &want.identities),
            "seed {seed}: {value}"
        );
        let history = |events: Vec<whisperer_core::StoredEvent>| -> Vec<String> {
            events.into_iter().map(|e| e.event.message_id).collect()
        };
        assert_eq!(
            history(pg.person_events(ws, got.id, None, 10_000).await.unwrap()),
            history(sqlite.person_events(ws, want.id, None, 10_000).await.unwrap()),
            "seed {seed}: events of {value}"
        );
        assert_eq!(
            pg.event_counts(ws, got.id).await.unwrap(),
            sqlite.event_counts(ws, want.id).await.unwrap(),
            "seed {seed}: counts of {value}"
        );
        assert_eq!(
            pg.identify_traits(ws, got.id).await.unwrap(),
            sqlite.identify_traits(ws, want.id).await.unwrap(),
            "seed {seed}: traits of {value}"
        );
    }
}
