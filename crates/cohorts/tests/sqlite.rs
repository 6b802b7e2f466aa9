//! Retention over a real SQLite store, against matrices computed by hand: identity merges,
//! late events, system events, traits from identify calls and another workspace's events.

use serde_json::{Value, json};
use std::sync::Arc;
use whisperer_cohorts::{Behavior, Group, Period, RetentionQuery, retention};
use whisperer_core::time::parse_iso8601;
use whisperer_core::{ApiKey, EventType, KeyKind, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_store::{NewKey, Store};
use whisperer_store_sqlite::SqliteStore;

fn event(
    ws: &WorkspaceId,
    event_type: EventType,
    name: Option<&str>,
    user: Option<&str>,
    anon: Option<&str>,
    at: &str,
    extra: Value,
) -> NewEvent {
    let message_id = format!("{}-{}", rand_id(), at);
    let mut raw = json!({"type": event_type.as_str(), "messageId": message_id, "timestamp": at});
    if let Some(name) = name {
        raw[if event_type == EventType::Track { "event" } else { "name" }] = json!(name);
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        raw[k] = v.clone();
    }
    let at = parse_iso8601(at).unwrap();
    NewEvent {
        workspace_id: ws.clone(),
        message_id,
        event_type,
        name: name.map(str::to_owned),
        user_id: user.map(str::to_owned),
        anonymous_id: anon.map(str::to_owned),
        previous_id: None,
        timestamp: at,
        received_at: at,
        raw: raw.to_string(),
        enrichment: "{}".into(),
    }
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("m{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn track(ws: &WorkspaceId, user: &str, name: &str, at: &str) -> NewEvent {
    event(ws, EventType::Track, Some(name), Some(user), None, at, json!({}))
}

fn anon_track(ws: &WorkspaceId, anon: &str, name: &str, at: &str) -> NewEvent {
    event(ws, EventType::Track, Some(name), None, Some(anon), at, json!({}))
}

fn identify(ws: &WorkspaceId, user: &str, anon: Option<&str>, at: &str, extra: Value) -> NewEvent {
    event(ws, EventType::Identify, None, Some(user), anon, at, extra)
}

async fn workspace(store: &dyn Store) -> WorkspaceId {
    let ws = Workspace { id: WorkspaceId::generate(), name: "Acme".into(), created_at: Millis::now() };
    let key = ApiKey::generate(KeyKind::Secret);
    store.create_workspace(&ws, &[NewKey::of(&key, Millis::now())]).await.unwrap();
    ws.id
}

/// (cohort label, size, active per column with `None` for unobserved cells).
type Rows = Vec<(String, u64, Vec<Option<u64>>)>;

fn rows(group: &Group) -> Rows {
    group
        .cohorts
        .iter()
        .map(|r| (r.label.clone(), r.size, r.cells.iter().map(|c| c.map(|c| c.active)).collect()))
        .collect()
}

fn expected(rows: &[(&str, u64, &[Option<u64>])]) -> Rows {
    rows.iter().map(|(l, s, c)| ((*l).to_owned(), *s, c.to_vec())).collect()
}

#[tokio::test]
async fn retention_over_a_sqlite_store_matches_the_hand_computed_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ws = workspace(store.as_ref()).await;
    let other = workspace(store.as_ref()).await;
    // Weeks (Monday starts): W0 2024-01-01, W1 01-08, W2 01-15, W3 01-22.
    let batches = vec![
        vec![
            // ada: an anonymous page view, then identifies (her visit counts as hers).
            event(&ws, EventType::Page, Some("Pricing"), None, Some("v1"), "2024-01-02T10:00:00Z", json!({})),
            identify(&ws, "ada", Some("v1"), "2024-01-03T10:00:00Z", json!({"traits": {"plan": "pro"}})),
            track(&ws, "ada", "Invite Sent", "2024-01-04T10:00:00Z"),
            track(&ws, "ada", "Opened", "2024-01-16T10:00:00Z"),
            // bob: W0 and W1.
            track(&ws, "bob", "Opened", "2024-01-03T11:00:00Z"),
            identify(&ws, "bob", None, "2024-01-03T11:00:00Z", json!({"traits": {"plan": "free"}})),
            track(&ws, "bob", "Opened", "2024-01-10T11:00:00Z"),
            // cy: W1 and W3; plan first in context.traits, later overridden by a newer call.
            track(&ws, "cy", "Opened", "2024-01-09T09:00:00Z"),
            identify(
                &ws,
                "cy",
                None,
                "2024-01-09T09:00:00Z",
                json!({"context": {"traits": {"plan": "free"}}}),
            ),
            identify(&ws, "cy", None, "2024-01-20T09:00:00Z", json!({"traits": {"plan": "pro"}})),
            track(&ws, "cy", "Opened", "2024-01-23T09:00:00Z"),
            // dee only ever received messages: not active, in no cohort.
            track(&ws, "dee", "Message Sent", "2024-01-05T09:00:00Z"),
            track(&ws, "dee", "Lifecycle Stage Changed", "2024-01-06T09:00:00Z"),
            // eve: her W3 event arrives first, her W0 event later.
            track(&ws, "eve", "Opened", "2024-01-24T09:00:00Z"),
            // fay is a user in W2; an anonymous visitor in W1 who turns out to be her.
            track(&ws, "fay", "Opened", "2024-01-17T09:00:00Z"),
            anon_track(&ws, "v2", "Opened", "2024-01-11T09:00:00Z"),
            // Another workspace's person, in W0: never in this workspace's report.
            track(&other, "zed", "Opened", "2024-01-01T09:00:00Z"),
        ],
        vec![
            track(&ws, "eve", "Opened", "2024-01-02T09:00:00Z"),
            // Merges the anonymous v2 person into fay.
            identify(&ws, "fay", Some("v2"), "2024-01-18T09:00:00Z", json!({})),
        ],
    ];
    for batch in batches {
        store.append(batch, Millis(0)).await.unwrap();
    }

    let weekly = retention(store.as_ref(), &ws, &RetentionQuery::default()).await.unwrap();
    assert_eq!(weekly.persons, 5, "ada, bob, cy, eve, fay");
    assert_eq!(weekly.columns, 4);
    assert_eq!(weekly.as_of, Some(parse_iso8601("2024-01-24T09:00:00Z").unwrap()));
    assert_eq!(weekly.groups.len(), 1);
    // W0: ada (W0, W2), bob (W0, W1), eve (W0, W3). W1: cy (W1, W3), fay (W1, W2).
    assert_eq!(
        rows(&weekly.groups[0]),
        expected(&[
            ("2024-01-01", 3, &[Some(3), Some(1), Some(1), Some(1)]),
            ("2024-01-08", 2, &[Some(2), Some(1), Some(1), None]),
        ])
    );
    let curve: Vec<Option<(u64, u64)>> =
        weekly.groups[0].curve.iter().map(|c| c.map(|c| (c.active, c.persons))).collect();
    assert_eq!(curve, [Some((5, 5)), Some((2, 5)), Some((2, 5)), Some((1, 3))]);

    let split = RetentionQuery { split: Some("plan".into()), ..Default::default() };
    let by_plan = retention(store.as_ref(), &ws, &split).await.unwrap();
    let labels: Vec<(String, u64)> =
        by_plan.groups.iter().map(|g| (by_plan.group_label(g), g.persons)).collect();
    assert_eq!(
        labels,
        [("plan = pro".to_owned(), 2), ("plan = free".to_owned(), 1), ("plan (none)".to_owned(), 2)]
    );
    assert_eq!(
        rows(&by_plan.groups[0]),
        expected(&[
            ("2024-01-01", 1, &[Some(1), Some(0), Some(1), Some(0)]),
            ("2024-01-08", 1, &[Some(1), Some(0), Some(1), None]),
        ])
    );
    assert_eq!(
        rows(&by_plan.groups[1]),
        expected(&[("2024-01-01", 1, &[Some(1), Some(1), Some(0), Some(0)])])
    );
    assert_eq!(
        rows(&by_plan.groups[2]),
        expected(&[
            ("2024-01-01", 1, &[Some(1), Some(0), Some(0), Some(1)]),
            ("2024-01-08", 1, &[Some(1), Some(1), Some(0), None]),
        ])
    );

    let behaviour = RetentionQuery {
        behavior: Some(Behavior { event: "Invite Sent".into(), within_days: 7 }),
        ..Default::default()
    };
    let by_invite = retention(store.as_ref(), &ws, &behaviour).await.unwrap();
    assert_eq!(by_invite.groups.len(), 2);
    assert_eq!(
        rows(&by_invite.groups[0]),
        expected(&[("2024-01-01", 1, &[Some(1), Some(0), Some(1), Some(0)])])
    );
    assert_eq!(
        rows(&by_invite.groups[1]),
        expected(&[
            ("2024-01-01", 2, &[Some(2), Some(1), Some(0), Some(1)]),
            ("2024-01-08", 2, &[Some(2), Some(1), Some(1), None]),
        ])
    );

    let monthly = RetentionQuery { period: Period::Month, ..Default::default() };
    let monthly = retention(store.as_ref(), &ws, &monthly).await.unwrap();
    assert_eq!(rows(&monthly.groups[0]), expected(&[("2024-01", 5, &[Some(5)])]));

    // The other workspace sees only its own person.
    let theirs = retention(store.as_ref(), &other, &RetentionQuery::default()).await.unwrap();
    assert_eq!(theirs.persons, 1);
    assert_eq!(rows(&theirs.groups[0]), expected(&[("2024-01-01", 1, &[Some(1)])]));
}

#[tokio::test]
async fn a_log_longer_than_a_page_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ws = workspace(store.as_ref()).await;
    // 25,000 events over 2,500 users: more than two pages. User i is active in week 0 and, when
    // i is even, in week 1 too.
    let mut batch = Vec::new();
    for i in 0..2_500 {
        let user = format!("u{i}");
        for d in 0..9 {
            batch.push(track(&ws, &user, "Opened", &format!("2024-01-0{}T10:00:00Z", 1 + d % 7)));
        }
        let late = if i % 2 == 0 { "2024-01-09T10:00:00Z" } else { "2024-01-07T10:00:00Z" };
        batch.push(track(&ws, &user, "Opened", late));
    }
    store.append(batch, Millis(0)).await.unwrap();
    let r = retention(store.as_ref(), &ws, &RetentionQuery::default()).await.unwrap();
    assert_eq!(r.events_scanned, 25_000);
    assert_eq!(rows(&r.groups[0]), expected(&[("2024-01-01", 2_500, &[Some(2_500), Some(1_250)])]));
}
