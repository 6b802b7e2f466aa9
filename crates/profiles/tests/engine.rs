//! The live engine against a real SQLite store: incremental profiles equal a recompute from
//! the log, survive a restart without replaying it, follow merges, and write stage changes.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use whisperer_core::{EventType, IdKind, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_profiles::engine::CONSUMER;
use whisperer_profiles::{EngineConfig, ProfileEngine, Stage, Tracker};
use whisperer_store::Store;
use whisperer_store_sqlite::SqliteStore;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;

fn track(
    ws: &WorkspaceId,
    id: &str,
    user: Option<&str>,
    anon: Option<&str>,
    name: &str,
    at: i64,
    props: serde_json::Value,
) -> NewEvent {
    let raw = json!({
        "type": "track", "event": name, "messageId": id, "userId": user, "anonymousId": anon,
        "properties": props, "context": {"timezone": "Europe/Berlin"},
    });
    NewEvent {
        workspace_id: ws.clone(),
        message_id: id.into(),
        event_type: EventType::Track,
        name: Some(name.into()),
        user_id: user.map(Into::into),
        anonymous_id: anon.map(Into::into),
        previous_id: None,
        timestamp: Millis(at),
        received_at: Millis(at),
        raw: raw.to_string(),
        enrichment: "{}".into(),
    }
}

async fn setup() -> (tempfile::TempDir, Arc<SqliteStore>, WorkspaceId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ws = Workspace { id: WorkspaceId::generate(), name: "Shop".into(), created_at: Millis(T0) };
    store.create_workspace(&ws, &[]).await.unwrap();
    (dir, store, ws.id)
}

/// Random activity of 40 users over 120 days in log order with some late arrivals, visitors
/// who browse anonymously and then sign in, and users who sign in on a second device later
/// (which merges two persons that both have history).
fn history(ws: &WorkspaceId, seed: u64) -> Vec<NewEvent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let names = ["Order Completed", "Product Viewed", "Cart Updated", "Search", "Review Written"];
    let mut out = Vec::new();
    for i in 0..4000 {
        let at =
            T0 + i * 120 * DAY / 4000 - if rng.random_bool(0.05) { rng.random_range(0..3 * DAY) } else { 0 };
        let u = rng.random_range(0..40);
        // users 30..40 take long breaks
        if u >= 30 && (at - T0) / DAY % 40 > 10 {
            continue;
        }
        let name = names[rng.random_range(0..names.len())];
        let mut props = json!({"feature": format!("f{}", rng.random_range(0..6))});
        if name == "Order Completed" {
            props["revenue"] = json!(rng.random_range(5..200));
        }
        // anonymous before signing in at event 1000; a second device with its own history,
        // joined at event 3000
        for (at_event, users, device) in [(1000, 0..5, "anon"), (3000, 5..10, "phone")] {
            if i == at_event {
                for v in users {
                    let (user, anon) = (format!("user-{v}"), format!("{device}-{v}"));
                    let id = format!("login-{v}");
                    out.push(track(ws, &id, Some(&user), Some(&anon), "Signed In", at, json!({})));
                }
            }
        }
        let (user, anon) = match (u, i) {
            (0..5, 0..1000) => (None, Some(format!("anon-{u}"))),
            (5..10, 2000..3000) => (None, Some(format!("phone-{u}"))),
            _ => (Some(format!("user-{u}")), None),
        };
        out.push(track(ws, &format!("m{i}"), user.as_deref(), anon.as_deref(), name, at, props));
    }
    out
}

fn config(batch: usize) -> EngineConfig {
    EngineConfig { batch, sweep_interval: Duration::from_secs(3600), ..EngineConfig::default() }
}

#[tokio::test]
async fn incremental_profiles_equal_a_recompute_and_survive_a_restart() {
    let (_dir, store, ws) = setup().await;
    let events = history(&ws, 7);
    let (first, rest) = events.split_at(2500);
    for chunk in first.chunks(97) {
        store.append(chunk.to_vec(), Millis(0)).await.unwrap();
    }

    let engine = ProfileEngine::new(store.clone(), config(113));
    engine.catch_up().await.unwrap();
    let checkpoint = store.consumer_state(CONSUMER, &ws).await.unwrap().unwrap().checkpoint;
    assert!(checkpoint > 0);
    drop(engine);

    // More traffic (with the merges) while nothing runs, then a new engine: it starts from the
    // stored checkpoint, not from the beginning of the log.
    for chunk in rest.chunks(89) {
        store.append(chunk.to_vec(), Millis(0)).await.unwrap();
    }
    let engine = ProfileEngine::new(store.clone(), config(51));
    engine.poll_once().await.unwrap();
    let after_one_poll = engine.with_workspace(&ws, |w| w.checkpoint).unwrap();
    assert!(
        after_one_poll > checkpoint && after_one_poll <= checkpoint + 51 + 100,
        "{checkpoint} {after_one_poll}"
    );
    engine.catch_up().await.unwrap();

    let (profiles, dict) =
        engine.with_workspace(&ws, |w| (w.profiles.clone(), w.tracker.dict.clone())).unwrap();
    let persons = store.workspace_stats(&ws).await.unwrap().persons;
    assert_eq!(profiles.len() as u64, persons, "one profile per person, none for merged-away ones");
    let mut tracker = Tracker { dict, ..Tracker::default() };
    let mut with_revenue = 0;
    for (person, live) in profiles.iter() {
        let log = store.person_log(&ws, person, i64::MAX).await.unwrap();
        let recomputed = tracker.recompute(&log);
        assert_eq!(live, &recomputed, "person {person}");
        with_revenue += (recomputed.features(T0 + 121 * DAY).revenue_total > 0.0) as usize;
    }
    assert!(with_revenue > 20);

    // The merged users hold both devices' history.
    let merged = store.find_person(&ws, IdKind::User, "user-7").await.unwrap().unwrap();
    let f = profiles.get(&merged.id).unwrap().features(T0 + 121 * DAY);
    let logged = store.person_log(&ws, merged.id, i64::MAX).await.unwrap();
    let activity =
        logged.iter().filter(|e| e.event.name.as_deref() != Some("Lifecycle Stage Changed")).count();
    assert_eq!(f.events_total as usize, activity);
    assert!(logged.iter().any(|e| e.event.anonymous_id.as_deref() == Some("phone-7")));
}

#[tokio::test]
async fn stage_changes_are_written_as_events_once() {
    let (_dir, store, ws) = setup().await;
    store.append(history(&ws, 11), Millis(0)).await.unwrap();
    let engine = ProfileEngine::new(store.clone(), config(500));
    engine.catch_up().await.unwrap();
    // A sweep long after the last event moves everyone who stopped to churned.
    let swept = engine.sweep(T0 + 400 * DAY).await.unwrap();
    assert!(swept > 0);
    engine.catch_up().await.unwrap();
    let changes: Vec<_> = store
        .events_after(&ws, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.name.as_deref() == Some("Lifecycle Stage Changed"))
        .collect();
    assert!(changes.len() > 40, "{}", changes.len());
    let mut seen = std::collections::HashSet::new();
    for e in &changes {
        let raw: serde_json::Value = serde_json::from_str(&e.event.raw).unwrap();
        let (from, to) =
            (raw["properties"]["from"].as_str().unwrap(), raw["properties"]["to"].as_str().unwrap());
        assert_ne!(from, to);
        assert!(Stage::parse(from).is_some() && Stage::parse(to).is_some());
        assert!(seen.insert(e.event.message_id.clone()));
    }
    // users with long breaks went dormant or churned and came back at some point
    assert!(changes.iter().any(|e| e.event.raw.contains(r#""to":"resurrected""#)));
    let stages =
        engine.with_workspace(&ws, |w| w.profiles.values().map(|p| p.stage()).collect::<Vec<_>>()).unwrap();
    assert!(stages.iter().all(|s| *s == Stage::Churned), "{stages:?}");

    // A second engine over the same store finds nothing new to say.
    let again = ProfileEngine::new(store.clone(), config(500));
    again.catch_up().await.unwrap();
    let total = store.workspace_stats(&ws).await.unwrap().events;
    again.sweep(T0 + 400 * DAY).await.unwrap();
    again.catch_up().await.unwrap();
    assert_eq!(store.workspace_stats(&ws).await.unwrap().events, total);
}

#[tokio::test]
async fn two_engines_on_one_workspace_cannot_both_commit() {
    let (_dir, store, ws) = setup().await;
    store.append(history(&ws, 3)[..300].to_vec(), Millis(0)).await.unwrap();
    let a = ProfileEngine::new(store.clone(), config(100));
    let b = ProfileEngine::new(store.clone(), config(100));
    a.poll_once().await.unwrap();
    b.poll_once().await.unwrap();
    a.catch_up().await.unwrap();
    assert!(b.catch_up().await.is_err(), "the second writer must be refused");
}

#[tokio::test]
async fn each_workspace_has_its_own_thresholds() {
    let (_dir, store, lenient) = setup().await;
    let strict = Workspace { id: WorkspaceId::generate(), name: "Strict".into(), created_at: Millis(T0) };
    store.create_workspace(&strict, &[]).await.unwrap();
    let strict = strict.id;
    for ws in [&lenient, &strict] {
        let events: Vec<_> = (0..20)
            .map(|d| track(ws, &format!("m{d}"), Some("ann"), None, "Search", T0 + d * DAY, json!({})))
            .collect();
        store.append(events, Millis(0)).await.unwrap();
    }
    let thresholds = r#"{"at_risk_days": 25, "dormant_days": 40, "churned_days": 60}"#;
    store.set_setting(&lenient, whisperer_profiles::LIFECYCLE_SETTING, thresholds, Millis(T0)).await.unwrap();
    let engine = ProfileEngine::new(store.clone(), config(100));
    engine.catch_up().await.unwrap();
    // 20 days after the last visit: dormant by the defaults (14), still fine by 25/40/60.
    engine.sweep(T0 + 39 * DAY).await.unwrap();
    let stage = |ws: &WorkspaceId| {
        engine.with_workspace(ws, |w| w.profiles.values().next().unwrap().stage()).unwrap()
    };
    assert_eq!(stage(&strict), Stage::Dormant);
    assert_ne!(stage(&lenient), Stage::Dormant);
    assert_ne!(stage(&lenient), Stage::AtRisk);
}

#[tokio::test]
async fn the_running_engine_sweeps_once_it_has_caught_up() {
    let (_dir, store, ws) = setup().await;
    let engine = ProfileEngine::new(
        store.clone(),
        EngineConfig { poll_interval: Duration::from_millis(10), ..config(100) },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(engine.clone().run(async move {
        let _ = stopped.await;
    }));
    // The first sweep comes at once on an empty log; history arriving later (in batches smaller
    // than a full read) must still be swept as of now soon after it is folded in, not only at
    // the hourly interval.
    while engine.sweeps() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.append(history(&ws, 5)[..50].to_vec(), Millis(0)).await.unwrap();
    let waiting = std::time::Instant::now();
    while engine.sweeps() < 2 {
        assert!(waiting.elapsed() < Duration::from_secs(20), "no sweep after catching up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stages =
        engine.with_workspace(&ws, |w| w.profiles.values().map(|p| p.stage()).collect::<Vec<_>>()).unwrap();
    assert!(!stages.is_empty() && stages.iter().all(|s| *s == Stage::Churned), "{stages:?}");
    stop.send(()).unwrap();
    running.await.unwrap();
}
