//! The conformance suite every backend runs, through [`conformance_suite!`](crate::conformance_suite).
//!
//! Each check gets a fresh, empty store and exercises the [`Store`] contract through its public
//! methods only, so a backend that passes behaves like every other one.

use serde_json::json;
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::IdKind;
use whisperer_core::keys::KeyHash;
use whisperer_core::tracking_plan::{PlanMode, TrackingPlan};
use whisperer_core::{ApiKey, EventType, KeyKind, Millis, NewEvent, Workspace, WorkspaceId};

use crate::{
    ConsumerCommit, ConsumerState, DecisionQuery, DecisionRecord, DefinitionKind, EventCursor, LearnerCommit,
    MessageQuery, MessageRecord, MessageStatus, MessageUpdate, NewKey, OutcomeKind, OutcomeUpdate,
    PersonMerge, Store, StoreError,
};

/// Expands to one `#[tokio::test]` per check. `$make` is an async expression giving
/// `Option<(impl Store, guard)>`: a fresh empty store and whatever must live as long as it (a
/// temporary directory, say), or `None` to skip (the maker prints why).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            workspaces_and_keys,
            key_revocation_and_rotation,
            tracking_plans,
            append_and_dedup,
            dedup_window,
            anonymous_history_joins_the_user,
            alias_merges_existing_events,
            tenancy_isolates_everything,
            person_events_paginate_newest_first,
            counts_and_traits,
            events_after_in_log_order,
            prune_dedup,
            raw_and_enrichment_round_trip,
            merges_are_recorded_at_their_batch,
            consumer_state_commits_atomically,
            model_versions,
            settings,
            campaign_versions,
            templates_are_versioned_apart_from_campaigns,
            decisions_and_outcomes,
            outbox_lifecycle
        );
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((store, _guard)) = $make.await else { return };
                $crate::conformance::$name(&store).await;
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

async fn workspace(store: &impl Store, name: &str) -> (WorkspaceId, ApiKey, ApiKey) {
    let ws = Workspace { id: WorkspaceId::generate(), name: name.into(), created_at: Millis(T0) };
    let write = ApiKey::generate(KeyKind::Write);
    let secret = ApiKey::generate(KeyKind::Secret);
    store
        .create_workspace(&ws, &[NewKey::of(&write, Millis(T0)), NewKey::of(&secret, Millis(T0))])
        .await
        .unwrap();
    (ws.id, write, secret)
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
        raw: json!({"type": "track", "event": "Item Viewed", "messageId": message_id}).to_string(),
        enrichment: "{}".into(),
    }
}

fn identify(
    ws: &WorkspaceId,
    message_id: &str,
    user: &str,
    anon: Option<&str>,
    traits: serde_json::Value,
    at: i64,
) -> NewEvent {
    NewEvent {
        event_type: EventType::Identify,
        name: None,
        raw: json!({"type": "identify", "userId": user, "traits": traits, "messageId": message_id})
            .to_string(),
        ..event(ws, message_id, Some(user), anon, at)
    }
}

fn stored(outcomes: &[AppendOutcome]) -> usize {
    outcomes.iter().filter(|o| matches!(o, AppendOutcome::Stored { .. })).count()
}

pub async fn workspaces_and_keys(store: &impl Store) {
    store.ping().await.unwrap();
    assert!(store.list_workspaces().await.unwrap().is_empty());
    let (a, write, secret) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    let names: Vec<_> = store.list_workspaces().await.unwrap().into_iter().map(|w| w.name).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Acme".to_string()) && names.contains(&"Beta".to_string()));
    assert_eq!(store.workspace(&a).await.unwrap().unwrap().name, "Acme");
    assert!(store.workspace(&WorkspaceId::generate()).await.unwrap().is_none());

    let found = store.find_key(&write.hash()).await.unwrap().unwrap();
    assert_eq!(
        (found.workspace_id.clone(), found.kind, found.id.clone()),
        (a.clone(), KeyKind::Write, write.id())
    );
    assert!(found.is_active());
    assert_eq!(store.find_key(&secret.hash()).await.unwrap().unwrap().kind, KeyKind::Secret);
    assert!(store.find_key(&KeyHash::of("wk_nope")).await.unwrap().is_none());

    let keys = store.list_keys(&a).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.workspace_id == a));
    assert_eq!(store.list_keys(&b).await.unwrap().len(), 2);

    let extra = ApiKey::generate(KeyKind::Write);
    let err = store.add_key(&WorkspaceId::generate(), &NewKey::of(&extra, Millis(T0))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // Creating a workspace whose id exists is a conflict, and leaves no key behind.
    let dup = Workspace { id: a.clone(), name: "again".into(), created_at: Millis(T0) };
    let err = store.create_workspace(&dup, &[NewKey::of(&extra, Millis(T0))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(store.find_key(&extra.hash()).await.unwrap().is_none());
}

pub async fn key_revocation_and_rotation(store: &impl Store) {
    let (a, write, _) = workspace(store, "Acme").await;
    let (b, write_b, _) = workspace(store, "Beta").await;
    // Another workspace cannot revoke a's key by id.
    assert!(!store.revoke_key(&b, &write.id(), Millis(T0 + 1)).await.unwrap());
    assert!(store.find_key(&write.hash()).await.unwrap().unwrap().is_active());

    let newer = ApiKey::generate(KeyKind::Write);
    store.add_key(&a, &NewKey::of(&newer, Millis(T0 + 1))).await.unwrap();
    let revoked = store.revoke_keys_except(&a, KeyKind::Write, &newer.id(), Millis(T0 + 2)).await.unwrap();
    assert_eq!(revoked, 1);
    let old = store.find_key(&write.hash()).await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(Millis(T0 + 2)));
    assert!(store.find_key(&newer.hash()).await.unwrap().unwrap().is_active());
    assert!(store.find_key(&write_b.hash()).await.unwrap().unwrap().is_active(), "b untouched");
    // Secret keys are not touched by a write-key rotation.
    assert_eq!(store.list_keys(&a).await.unwrap().iter().filter(|k| k.is_active()).count(), 2);

    assert!(store.revoke_key(&a, &newer.id(), Millis(T0 + 3)).await.unwrap());
    assert!(!store.revoke_key(&a, &newer.id(), Millis(T0 + 4)).await.unwrap(), "already revoked");
    assert!(!store.find_key(&newer.hash()).await.unwrap().unwrap().is_active());
}

pub async fn tracking_plans(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    assert!(store.tracking_plan(&a).await.unwrap().is_none());
    let mut plan = TrackingPlan { mode: PlanMode::Reject, ..Default::default() };
    plan.events.insert("Order Completed".into(), json!({"type": "object", "required": ["revenue"]}));
    store.set_tracking_plan(&a, &plan).await.unwrap();
    assert_eq!(store.tracking_plan(&a).await.unwrap(), Some(plan.clone()));
    assert!(store.tracking_plan(&b).await.unwrap().is_none());
    plan.mode = PlanMode::Warn;
    store.set_tracking_plan(&a, &plan).await.unwrap();
    assert_eq!(store.tracking_plan(&a).await.unwrap().unwrap().mode, PlanMode::Warn);
    let err = store.set_tracking_plan(&WorkspaceId::generate(), &plan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

pub async fn append_and_dedup(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let batch = vec![
        event(&a, "m1", Some("u1"), None, T0),
        event(&a, "m2", Some("u1"), None, T0 + 1),
        event(&a, "m1", Some("u1"), None, T0 + 2),
    ];
    let out = store.append(batch.clone(), Millis(0)).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    assert!(matches!(out[1], AppendOutcome::Stored { .. }));
    assert_eq!(out[2], AppendOutcome::Duplicate, "same id twice in one batch");
    let again = store.append(batch[..2].to_vec(), Millis(0)).await.unwrap();
    assert_eq!(again, vec![AppendOutcome::Duplicate; 2], "same ids in a later batch");
    assert_eq!(store.events_after(&a, 0, 100).await.unwrap().len(), 2);
    assert!(store.append(vec![], Millis(0)).await.unwrap().is_empty());
}

pub async fn dedup_window(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    store.append(vec![event(&a, "m1", Some("u1"), None, T0)], Millis(0)).await.unwrap();
    // First seen at T0 + 5 (received_at); a window starting after that no longer covers it.
    let out = store.append(vec![event(&a, "m1", Some("u1"), None, T0 + 100)], Millis(T0 + 50)).await.unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    // ... and the re-stored copy opens a new window.
    let out = store.append(vec![event(&a, "m1", Some("u1"), None, T0 + 200)], Millis(T0 + 50)).await.unwrap();
    assert_eq!(out[0], AppendOutcome::Duplicate);
}

pub async fn anonymous_history_joins_the_user(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    // Before signing in, as two separate batches and commits.
    store
        .append(
            vec![event(&a, "v1", None, Some("anon-1"), T0), event(&a, "v2", None, Some("anon-1"), T0 + 1)],
            Millis(0),
        )
        .await
        .unwrap();
    store.append(vec![event(&a, "k1", Some("u1"), None, T0 + 2)], Millis(0)).await.unwrap();
    store
        .append(vec![identify(&a, "i1", "u1", Some("anon-1"), json!({"plan": "free"}), T0 + 3)], Millis(0))
        .await
        .unwrap();
    let by_user = store.find_person(&a, IdKind::User, "u1").await.unwrap().unwrap();
    let by_anon = store.find_person(&a, IdKind::Anonymous, "anon-1").await.unwrap().unwrap();
    assert_eq!(by_user, by_anon);
    let stats = store.workspace_stats(&a).await.unwrap();
    assert_eq!(
        (stats.events, stats.persons, stats.identified_persons),
        (4, 1, 1),
        "the anonymous person merged"
    );
    assert_eq!(by_user.user_id.as_deref(), Some("u1"));
    assert!(by_user.identities.contains(&(IdKind::User, "u1".into())));
    assert!(by_user.identities.contains(&(IdKind::Anonymous, "anon-1".into())));
    let events = store.person_events(&a, by_user.id, None, 100).await.unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["i1", "k1", "v2", "v1"]);
    assert!(events.iter().all(|e| e.person_id == by_user.id));
}

pub async fn alias_merges_existing_events(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    store.append(vec![event(&a, "o1", Some("old-id"), None, T0)], Millis(0)).await.unwrap();
    let mut alias = event(&a, "al", Some("new-id"), None, T0 + 1);
    alias.event_type = EventType::Alias;
    alias.name = None;
    alias.previous_id = Some("old-id".into());
    // The alias and a follow-up in one batch: resolution sees its own batch.
    store.append(vec![alias, event(&a, "n1", Some("old-id"), None, T0 + 2)], Millis(0)).await.unwrap();
    let person = store.find_person(&a, IdKind::User, "new-id").await.unwrap().unwrap();
    assert_eq!(store.find_person(&a, IdKind::User, "old-id").await.unwrap().unwrap().id, person.id);
    let events = store.person_events(&a, person.id, None, 10).await.unwrap();
    assert_eq!(events.len(), 3);
}

pub async fn tenancy_isolates_everything(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    store.append(vec![event(&a, "m1", Some("u1"), Some("x"), T0)], Millis(0)).await.unwrap();
    // The same message id and user id in another workspace are different things.
    let out = store.append(vec![event(&b, "m1", Some("u1"), Some("x"), T0)], Millis(0)).await.unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    let pa = store.find_person(&a, IdKind::User, "u1").await.unwrap().unwrap();
    let pb = store.find_person(&b, IdKind::User, "u1").await.unwrap().unwrap();
    assert_ne!(pa.id, pb.id);
    // A's person id asked through B finds nothing.
    assert!(store.person_events(&b, pa.id, None, 10).await.unwrap().is_empty());
    assert!(store.event_counts(&b, pa.id).await.unwrap().is_empty());
    assert!(store.identify_traits(&b, pa.id).await.unwrap().is_empty());
    assert_eq!(store.events_after(&a, 0, 10).await.unwrap().len(), 1);
    assert!(store.events_after(&a, 0, 10).await.unwrap().iter().all(|e| e.event.workspace_id == a));
    let c = WorkspaceId::generate();
    assert!(store.find_person(&c, IdKind::User, "u1").await.unwrap().is_none());
    let stats = store.workspace_stats(&a).await.unwrap();
    assert_eq!((stats.events, stats.persons, stats.identified_persons), (1, 1, 1));
    assert_eq!(store.workspace_stats(&c).await.unwrap(), Default::default());
}

pub async fn person_events_paginate_newest_first(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    // Out of order timestamps, two with the same timestamp.
    let batch: Vec<_> = [(1, 30), (2, 10), (3, 20), (4, 20), (5, 40)]
        .into_iter()
        .map(|(n, t)| event(&a, &format!("m{n}"), Some("u1"), None, T0 + t))
        .collect();
    store.append(batch.clone(), Millis(0)).await.unwrap();
    let person = store.find_person(&a, IdKind::User, "u1").await.unwrap().unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.person_events(&a, person.id, cursor, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        cursor = Some(EventCursor { timestamp: last.event.timestamp, seq: last.seq });
        seen.extend(page.into_iter().map(|e| e.event.message_id));
    }
    assert_eq!(seen, ["m5", "m1", "m4", "m3", "m2"]);
}

pub async fn counts_and_traits(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let mut page = event(&a, "p1", Some("u1"), None, T0 + 1);
    page.event_type = EventType::Page;
    page.name = Some("Pricing".into());
    store
        .append(
            vec![
                identify(&a, "i1", "u1", None, json!({"plan": "free", "email": "a@x.io"}), T0),
                event(&a, "t1", Some("u1"), None, T0 + 2),
                event(&a, "t2", Some("u1"), None, T0 + 3),
                page,
                identify(&a, "i2", "u1", None, json!({"plan": "pro"}), T0 + 4),
                NewEvent {
                    raw: json!({"type": "identify", "userId": "u1", "context": {"traits": {"seats": 5}}})
                        .to_string(),
                    ..identify(&a, "i3", "u1", None, json!(null), T0 + 5)
                },
                // Traits that are not an object are no traits.
                NewEvent {
                    raw: json!({"type": "identify", "userId": "u1", "context": {"traits": "oops"}})
                        .to_string(),
                    ..identify(&a, "i4", "u1", None, json!(null), T0 + 6)
                },
            ],
            Millis(0),
        )
        .await
        .unwrap();
    let person = store.find_person(&a, IdKind::User, "u1").await.unwrap().unwrap();
    let mut counts = store.event_counts(&a, person.id).await.unwrap();
    counts.sort_by_key(|c| (c.event_type.as_str(), c.name.clone()));
    let summary: Vec<_> = counts
        .iter()
        .map(|c| (c.event_type, c.name.as_deref(), c.count, c.first.0 - T0, c.last.0 - T0))
        .collect();
    assert_eq!(
        summary,
        [
            (EventType::Identify, None, 4, 0, 6),
            (EventType::Page, Some("Pricing"), 1, 1, 1),
            (EventType::Track, Some("Item Viewed"), 2, 2, 3),
        ]
    );
    let traits = store.identify_traits(&a, person.id).await.unwrap();
    assert_eq!(
        traits,
        [json!({"plan": "free", "email": "a@x.io"}), json!({"plan": "pro"}), json!({"seats": 5})]
    );
}

pub async fn events_after_in_log_order(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    for n in 0..5 {
        store
            .append(vec![event(&a, &format!("m{n}"), Some("u"), None, T0 - n * 1000)], Millis(0))
            .await
            .unwrap();
    }
    let all = store.events_after(&a, 0, 100).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"], "log order is commit order, not event time");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let rest = store.events_after(&a, all[1].seq, 2).await.unwrap();
    let ids: Vec<_> = rest.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["m2", "m3"]);
}

pub async fn prune_dedup(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    store.append(vec![event(&a, "old", Some("u"), None, T0)], Millis(0)).await.unwrap();
    store.append(vec![event(&a, "new", Some("u"), None, T0 + 1000)], Millis(0)).await.unwrap();
    assert_eq!(store.prune_dedup(Millis(T0 + 500)).await.unwrap(), 1);
    // The pruned id is accepted again even with the widest window; the kept one is not.
    let out = store
        .append(
            vec![event(&a, "old", Some("u"), None, T0 + 2000), event(&a, "new", Some("u"), None, T0 + 2000)],
            Millis(0),
        )
        .await
        .unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { .. }));
    assert_eq!(out[1], AppendOutcome::Duplicate);
    assert_eq!(stored(&out), 1);
}

pub async fn raw_and_enrichment_round_trip(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let mut e = event(&a, "m1", None, Some("anon"), T0);
    // Exact bytes survive, key order, whitespace and unicode included.
    e.raw = "{\"type\":\"track\",  \"z\":1,\"a\":\"é ✓ \\n\",\"event\":\"Item Viewed\"}".into();
    e.enrichment = json!({"ua": {"browser": "Firefox"}}).to_string();
    e.name = Some("Item Viewed".into());
    store.append(vec![e.clone()], Millis(0)).await.unwrap();
    let back = store.events_after(&a, 0, 10).await.unwrap().remove(0);
    assert_eq!(back.event, e);
}

pub async fn merges_are_recorded_at_their_batch(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    // Two persons: a user and an anonymous visitor on another device.
    store
        .append(
            vec![event(&a, "u1", Some("ann"), None, T0), event(&a, "v1", None, Some("dev-2"), T0 + 1)],
            Millis(0),
        )
        .await
        .unwrap();
    let user = store.find_person(&a, IdKind::User, "ann").await.unwrap().unwrap().id;
    let visitor = store.find_person(&a, IdKind::Anonymous, "dev-2").await.unwrap().unwrap().id;
    assert_ne!(user, visitor);
    let out = store
        .append(
            vec![
                event(&a, "x1", None, Some("dev-3"), T0 + 2),
                event(&a, "login", Some("ann"), Some("dev-2"), T0 + 3),
            ],
            Millis(0),
        )
        .await
        .unwrap();
    let AppendOutcome::Stored { seq: first } = out[0] else { panic!("stored") };
    let merges = store.person_merges(&a, 0, i64::MAX).await.unwrap();
    assert_eq!(merges, [PersonMerge { seq: first, from: visitor, into: user }]);
    assert_eq!(store.person(&a, visitor).await.unwrap(), None);
    let person = store.person(&a, user).await.unwrap().unwrap();
    assert_eq!(person.user_id.as_deref(), Some("ann"));
    assert_eq!(
        person.identities,
        [(IdKind::User, "ann".to_string()), (IdKind::Anonymous, "dev-2".to_string())]
    );
    assert_eq!(store.person(&b, user).await.unwrap(), None);
    assert!(store.person_merges(&a, first, i64::MAX).await.unwrap().is_empty());
    assert!(store.person_merges(&a, 0, first - 1).await.unwrap().is_empty());
    assert!(store.person_merges(&b, 0, i64::MAX).await.unwrap().is_empty());
    // The person's log: both devices' events, in log order, before a seq.
    let log = store.person_log(&a, user, i64::MAX).await.unwrap();
    let ids: Vec<_> = log.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["u1", "v1", "login"]);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.person_log(&a, user, first).await.unwrap().len(), 2);
    assert!(store.person_log(&b, user, i64::MAX).await.unwrap().is_empty());
}

pub async fn consumer_state_commits_atomically(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    assert_eq!(store.consumer_state("profiles", &a).await.unwrap(), None);
    let first = ConsumerCommit {
        expected: 0,
        checkpoint: 10,
        meta: b"dict".to_vec(),
        upserts: vec![(1, b"one".to_vec()), (2, b"two".to_vec())],
        deletes: vec![],
    };
    store.commit_consumer("profiles", &a, first).await.unwrap();
    let second = ConsumerCommit {
        expected: 10,
        checkpoint: 20,
        meta: b"dict2".to_vec(),
        upserts: vec![(2, b"TWO".to_vec()), (3, b"three".to_vec())],
        deletes: vec![1, 99],
    };
    store.commit_consumer("profiles", &a, second).await.unwrap();
    assert_eq!(
        store.consumer_state("profiles", &a).await.unwrap(),
        Some(ConsumerState { checkpoint: 20, meta: b"dict2".to_vec() })
    );
    assert_eq!(
        store.consumer_rows("profiles", &a).await.unwrap(),
        [(2, b"TWO".to_vec()), (3, b"three".to_vec())]
    );
    assert_eq!(store.consumer_row("profiles", &a, 3).await.unwrap(), Some(b"three".to_vec()));
    assert_eq!(store.consumer_row("profiles", &a, 1).await.unwrap(), None);
    // A stale writer changes nothing.
    let stale =
        ConsumerCommit { expected: 10, checkpoint: 30, upserts: vec![(7, vec![7])], ..Default::default() };
    assert!(matches!(store.commit_consumer("profiles", &a, stale).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.consumer_row("profiles", &a, 7).await.unwrap(), None);
    assert_eq!(store.consumer_state("profiles", &a).await.unwrap().unwrap().checkpoint, 20);
    // Consumers and workspaces are separate.
    assert_eq!(store.consumer_state("other", &a).await.unwrap(), None);
    assert!(store.consumer_rows("profiles", &b).await.unwrap().is_empty());
    assert_eq!(store.consumer_row("profiles", &b, 2).await.unwrap(), None);
    let fresh = ConsumerCommit { expected: 5, checkpoint: 6, ..Default::default() };
    assert!(matches!(store.commit_consumer("profiles", &b, fresh).await, Err(StoreError::Conflict(_))));
}

pub async fn model_versions(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    assert!(store.latest_model(&a, "churn", None).await.unwrap().is_none());
    let v1 =
        store.save_model(&a, "churn", Millis(T0), Millis(T0 - 100), r#"{"auc":0.8}"#, b"one").await.unwrap();
    let v2 = store
        .save_model(&a, "churn", Millis(T0 + 1), Millis(T0 + 50), r#"{"auc":0.9}"#, b"two")
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    store.save_model(&a, "other", Millis(T0), Millis(T0), "{}", b"x").await.unwrap();
    let (latest, bytes) = store.latest_model(&a, "churn", None).await.unwrap().unwrap();
    assert_eq!(
        (latest.version, bytes.as_slice(), latest.metrics.as_str()),
        (2, &b"two"[..], r#"{"auc":0.9}"#)
    );
    let (older, bytes) = store.latest_model(&a, "churn", Some(Millis(T0))).await.unwrap().unwrap();
    assert_eq!((older.version, bytes.as_slice(), older.as_of), (1, &b"one"[..], Millis(T0 - 100)));
    assert!(store.latest_model(&a, "churn", Some(Millis(T0 - 101))).await.unwrap().is_none());
    let listed = store.list_models(&a, "churn").await.unwrap();
    assert_eq!(listed.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(listed[1].created_at, Millis(T0 + 1));
    assert!(store.list_models(&b, "churn").await.unwrap().is_empty());
    assert!(store.latest_model(&b, "churn", None).await.unwrap().is_none());
    assert_eq!(store.save_model(&b, "churn", Millis(T0), Millis(T0), "{}", b"b").await.unwrap(), 1);
}

pub async fn settings(store: &impl Store) {
    let (a, _, _) = workspace(store, "Acme").await;
    let (b, _, _) = workspace(store, "Beta").await;
    assert_eq!(store.setting(&a, "lifecycle").await.unwrap(), None);
    store.set_setting(&a, "lifecycle", r#"{"churned_days":20}"#, Millis(T0)).await.unwrap();
    store.set_setting(&a, "lifecycle", r#"{"churned_days":40}"#, Millis(T0 + 1)).await.unwrap();
    assert_eq!(store.setting(&a, "lifecycle").await.unwrap().as_deref(), Some(r#"{"churned_days":40}"#));
    assert_eq!(store.setting(&a, "other").await.unwrap(), None);
    assert_eq!(store.setting(&b, "lifecycle").await.unwrap(), None);
    let unknown = WorkspaceId::generate();
    assert!(matches!(
        store.set_setting(&unknown, "lifecycle", "{}", Millis(T0)).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn campaign_versions(store: &impl Store) {
    let (ws, _, _) = workspace(store, "campaigns").await;
    let (other, _, _) = workspace(store, "other").await;
    let a1 = store.put_campaign(&ws, "win-back", r#"{"v":1}"#, Millis(T0)).await.unwrap();
    assert_eq!((a1.version, a1.num), (1, 1));
    let same = store.put_campaign(&ws, "win-back", r#"{"v":1}"#, Millis(T0 + 5)).await.unwrap();
    assert_eq!(same, a1, "an unchanged definition keeps its version");
    let b = store.put_campaign(&ws, "onboarding", r#"{"v":1}"#, Millis(T0 + 1)).await.unwrap();
    assert_eq!((b.version, b.num), (1, 2));
    let a2 = store.put_campaign(&ws, "win-back", r#"{"v":2}"#, Millis(T0 + 2)).await.unwrap();
    assert_eq!((a2.version, a2.num, a2.created_at), (2, 1, Millis(T0 + 2)));
    let all = store.campaigns(&ws).await.unwrap();
    assert_eq!(
        all.iter().map(|c| (c.id.as_str(), c.version)).collect::<Vec<_>>(),
        [("onboarding", 1), ("win-back", 2)]
    );
    assert_eq!(store.campaign(&ws, "win-back", None).await.unwrap().unwrap().definition, r#"{"v":2}"#);
    assert_eq!(store.campaign(&ws, "win-back", Some(1)).await.unwrap().unwrap().definition, r#"{"v":1}"#);
    assert_eq!(store.campaign(&ws, "win-back", Some(3)).await.unwrap(), None);
    assert!(store.campaigns(&other).await.unwrap().is_empty(), "campaigns belong to their workspace");
    assert_eq!(store.campaign(&other, "win-back", None).await.unwrap(), None);
    let o = store.put_campaign(&other, "win-back", r#"{"v":9}"#, Millis(T0)).await.unwrap();
    assert_eq!((o.version, o.num), (1, 1));
}

pub async fn templates_are_versioned_apart_from_campaigns(store: &impl Store) {
    let (ws, _, _) = workspace(store, "templates").await;
    let (other, _, _) = workspace(store, "other").await;
    let c = store.put_campaign(&ws, "welcome", r#"{"campaign":1}"#, Millis(T0)).await.unwrap();
    let t1 = store
        .put_definition(&ws, DefinitionKind::Template, "welcome", r#"{"t":1}"#, Millis(T0))
        .await
        .unwrap();
    assert_eq!((c.version, c.num, t1.version, t1.num), (1, 1, 1, 1), "numbers count per kind");
    let t2 = store
        .put_definition(&ws, DefinitionKind::Template, "welcome", r#"{"t":2}"#, Millis(T0 + 1))
        .await
        .unwrap();
    assert_eq!(t2.version, 2);
    assert_eq!(store.campaign(&ws, "welcome", None).await.unwrap().unwrap().definition, r#"{"campaign":1}"#);
    let templates = store.definitions(&ws, DefinitionKind::Template).await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].definition, r#"{"t":2}"#);
    let first = store.definition(&ws, DefinitionKind::Template, "welcome", Some(1)).await.unwrap().unwrap();
    assert_eq!(first.definition, r#"{"t":1}"#);
    assert!(store.definitions(&other, DefinitionKind::Template).await.unwrap().is_empty());
}

fn outbox_message(id: &str, person: i64, due: i64) -> MessageRecord {
    MessageRecord {
        id: id.into(),
        person,
        channel: "email".into(),
        decision_id: Some(format!("dec_{id}")),
        campaign: Some("win-back".into()),
        status: MessageStatus::Queued,
        attempts: 0,
        due_at: Millis(due),
        lease_until: None,
        provider: None,
        provider_message_id: None,
        body: r#"{"job":1}"#.into(),
        error: None,
        created_at: Millis(due - 5),
        updated_at: Millis(due - 5),
        seen_at: None,
    }
}

pub async fn outbox_lifecycle(store: &impl Store) {
    let (ws, _, _) = workspace(store, "outbox").await;
    let (other, _, _) = workspace(store, "other").await;
    // Enqueued with its decision in one call; a second enqueue of the same id changes nothing.
    store
        .insert_decisions(
            &ws,
            &[decision("dec_m1", "win-back", 1, T0, "send")],
            &[outbox_message("m1", 1, T0)],
        )
        .await
        .unwrap();
    let mut again = outbox_message("m1", 1, T0);
    again.body = "changed".into();
    let new = store
        .enqueue_messages(
            &ws,
            &[again, outbox_message("m2", 2, T0 + 10), outbox_message("m3", 3, T0 + 10_000)],
        )
        .await
        .unwrap();
    assert_eq!(new, 2, "m1 was already there");
    assert_eq!(store.message(&ws, "m1").await.unwrap().unwrap().body, r#"{"job":1}"#);

    // Only due messages are claimed, oldest first; a claim moves them to sending.
    assert!(store.claim_messages(&other, Millis(T0 + 50), Millis(T0 + 1_000), 10).await.unwrap().is_empty());
    let claimed = store.claim_messages(&ws, Millis(T0 + 50), Millis(T0 + 1_000), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
    assert!(claimed.iter().all(|m| m.status == MessageStatus::Sending && m.attempts == 1));
    assert!(
        store.claim_messages(&ws, Millis(T0 + 50), Millis(T0 + 1_000), 10).await.unwrap().is_empty(),
        "claimed once"
    );

    // m1 is sent; m2 fails transiently and is queued again for later.
    let mut sent = MessageUpdate::new("m1", MessageStatus::Sending, MessageStatus::Sent, Millis(T0 + 60));
    sent.provider = Some("smtp".into());
    sent.provider_message_id = Some("prov-1".into());
    sent.body = Some(r#"{"job":1,"rendered":true}"#.into());
    let mut retry = MessageUpdate::new("m2", MessageStatus::Sending, MessageStatus::Queued, Millis(T0 + 60));
    retry.due_at = Some(Millis(T0 + 500));
    retry.error = Some(r#"{"kind":"transient"}"#.into());
    assert_eq!(store.update_messages(&ws, &[sent.clone(), retry]).await.unwrap(), 2);
    assert_eq!(store.update_messages(&ws, &[sent]).await.unwrap(), 0, "m1 is no longer sending");
    let m1 = store.message(&ws, "m1").await.unwrap().unwrap();
    assert_eq!(
        (m1.status, m1.provider_message_id.as_deref(), m1.lease_until),
        (MessageStatus::Sent, Some("prov-1"), None)
    );
    assert_eq!(m1.body, r#"{"job":1,"rendered":true}"#);
    let by_provider = store
        .messages(
            &ws,
            &MessageQuery { provider_message_id: Some("prov-1".into()), limit: 10, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(by_provider.len(), 1);
    assert!(store.message(&other, "m1").await.unwrap().is_none(), "messages belong to their workspace");

    // A sender that dies leaves its claim to expire.
    let claimed = store.claim_messages(&ws, Millis(T0 + 600), Millis(T0 + 700), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| (m.id.as_str(), m.attempts)).collect::<Vec<_>>(), [("m2", 2)]);
    assert!(store.expired_messages(&ws, Millis(T0 + 650), 10).await.unwrap().is_empty());
    let expired = store.expired_messages(&ws, Millis(T0 + 701), 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].error.as_deref(), Some(r#"{"kind":"transient"}"#));
    let mut dead = MessageUpdate::new("m2", MessageStatus::Sending, MessageStatus::Dead, Millis(T0 + 701));
    dead.error = Some(r#"{"kind":"outcome_unknown"}"#.into());
    store.update_messages(&ws, &[dead]).await.unwrap();

    // A re-drive queues the dead letter again with a fresh attempt count.
    let dead = store
        .messages(&ws, &MessageQuery { status: Some(MessageStatus::Dead), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m2"]);
    let mut redrive = MessageUpdate::new("m2", MessageStatus::Dead, MessageStatus::Queued, Millis(T0 + 800));
    redrive.due_at = Some(Millis(T0 + 800));
    redrive.reset_attempts = true;
    store.update_messages(&ws, &[redrive]).await.unwrap();
    let m2 = store.message(&ws, "m2").await.unwrap().unwrap();
    assert_eq!((m2.status, m2.attempts, m2.due_at), (MessageStatus::Queued, 0, Millis(T0 + 800)));

    // Newest first, paged by (created_at, id).
    let page = store.messages(&ws, &MessageQuery { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m3", "m2"]);
    let last = &page[1];
    let rest = store
        .messages(
            &ws,
            &MessageQuery {
                before: Some((last.created_at, last.id.clone())),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m1"]);
    let for_person = store
        .messages(&ws, &MessageQuery { person: Some(3), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(for_person.len(), 1);
    let due = MessageQuery {
        status: Some(MessageStatus::Queued),
        due_by: Some(Millis(T0 + 900)),
        limit: 10,
        ..Default::default()
    };
    let due: Vec<String> = store.messages(&ws, &due).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(due, ["m2"], "m3 is due later");
    let email = MessageQuery { channel: Some("email".into()), limit: 10, ..Default::default() };
    assert_eq!(store.messages(&ws, &email).await.unwrap().len(), 3);
    let sms = MessageQuery { channel: Some("sms".into()), limit: 10, ..Default::default() };
    assert!(store.messages(&ws, &sms).await.unwrap().is_empty());

    // In-app messages are seen once, by their own person only.
    let mut in_app = outbox_message("inbox1", 7, T0);
    in_app.channel = "in_app".into();
    let mut someone_elses = outbox_message("inbox2", 8, T0);
    someone_elses.channel = "in_app".into();
    store.enqueue_messages(&ws, &[in_app, someone_elses]).await.unwrap();
    let claimed = store.claim_messages(&ws, Millis(T0 + 20_000), Millis(T0 + 30_000), 10).await.unwrap();
    let sent: Vec<MessageUpdate> = claimed
        .iter()
        .filter(|m| m.channel == "in_app")
        .map(|m| MessageUpdate::new(&m.id, MessageStatus::Sending, MessageStatus::Sent, Millis(T0 + 20_001)))
        .collect();
    assert_eq!(store.update_messages(&ws, &sent).await.unwrap(), 2);
    let unseen = |person| MessageQuery {
        person: Some(person),
        channel: Some("in_app".into()),
        unseen: true,
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.messages(&ws, &unseen(7)).await.unwrap().len(), 1);
    let ids = ["inbox1".to_owned(), "inbox2".to_owned(), "m1".to_owned()];
    let marked = store.mark_seen(&ws, 7, &ids, Millis(T0 + 20_002)).await.unwrap();
    assert_eq!(marked, ["inbox1"], "another person's message and an email are not this inbox's");
    assert!(store.mark_seen(&ws, 7, &ids, Millis(T0 + 20_003)).await.unwrap().is_empty(), "seen once");
    assert!(
        store.mark_seen(&other, 7, &ids, Millis(T0)).await.unwrap().is_empty(),
        "nor another workspace's"
    );
    assert!(store.messages(&ws, &unseen(7)).await.unwrap().is_empty());
    assert_eq!(store.messages(&ws, &unseen(8)).await.unwrap().len(), 1);
    assert_eq!(store.message(&ws, "inbox1").await.unwrap().unwrap().seen_at, Some(Millis(T0 + 20_002)));
}

/// A decision record as a backend stores it, for tests.
pub fn decision(id: &str, campaign: &str, person: i64, at: i64, status: &str) -> DecisionRecord {
    DecisionRecord {
        id: id.into(),
        campaign: campaign.into(),
        campaign_version: 1,
        person,
        user_id: Some(format!("u{person}")),
        at: Millis(at),
        status: status.into(),
        arm: (status == "send").then(|| "email/discount".into()),
        propensity: 0.25,
        holdout: status == "holdout",
        deliver_at: (status == "send").then_some(Millis(at + 10)),
        deadline: Millis(at + 1_000),
        policy_version: 3,
        body: r#"{"context":[1.0,0.5]}"#.into(),
        outcome: None,
        outcome_at: None,
        value: None,
        delivered_at: None,
        opened_at: None,
        clicked_at: None,
    }
}

pub async fn decisions_and_outcomes(store: &impl Store) {
    let (ws, _, _) = workspace(store, "decisions").await;
    let (other, _, _) = workspace(store, "other").await;
    let records = vec![
        decision("d1", "win-back", 1, T0, "send"),
        decision("d2", "win-back", 2, T0 + 1, "holdout"),
        decision("d3", "onboarding", 1, T0 + 2, "suppressed"),
        decision("d4", "win-back", 1, T0 + 2, "send"),
    ];
    store.insert_decisions(&ws, &records, &[]).await.unwrap();
    // Inserting again (a retried batch) changes nothing.
    let mut changed = records[0].clone();
    changed.status = "holdout".into();
    store.insert_decisions(&ws, &[changed], &[]).await.unwrap();
    let q = |f: fn(&mut DecisionQuery)| {
        let mut q = DecisionQuery { limit: 10, ..DecisionQuery::default() };
        f(&mut q);
        q
    };
    let ids = |v: Vec<DecisionRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let all = store.decisions(&ws, &q(|_| {})).await.unwrap();
    assert_eq!(all[3], records[0], "a decision reads back as written");
    assert_eq!(ids(all), ["d4", "d3", "d2", "d1"], "newest first, ties by id");
    assert_eq!(
        ids(store.decisions(&ws, &q(|q| q.campaign = Some("win-back".into()))).await.unwrap()),
        ["d4", "d2", "d1"]
    );
    assert_eq!(ids(store.decisions(&ws, &q(|q| q.person = Some(1))).await.unwrap()), ["d4", "d3", "d1"]);
    assert_eq!(
        ids(store.decisions(&ws, &q(|q| q.status = Some("send".into()))).await.unwrap()),
        ["d4", "d1"]
    );
    assert_eq!(
        ids(store.decisions(&ws, &q(|q| q.since = Some(Millis(T0 + 1)))).await.unwrap()),
        ["d4", "d3", "d2"]
    );
    assert_eq!(ids(store.decisions(&ws, &q(|q| q.until = Some(Millis(T0 + 1)))).await.unwrap()), ["d1"]);
    assert_eq!(
        ids(store.decisions(&ws, &q(|q| q.deadline_from = Some(Millis(T0 + 1_002)))).await.unwrap()),
        ["d4", "d3"]
    );
    let page = DecisionQuery { limit: 2, ..DecisionQuery::default() };
    let first = store.decisions(&ws, &page).await.unwrap();
    let last = first.last().unwrap();
    let next = DecisionQuery { before: Some((last.at, last.id.clone())), ..page };
    assert_eq!(ids(first), ["d4", "d3"]);
    assert_eq!(ids(store.decisions(&ws, &next).await.unwrap()), ["d2", "d1"]);
    assert!(
        store.decisions(&other, &q(|_| {})).await.unwrap().is_empty(),
        "decisions belong to their workspace"
    );

    // Outcomes commit with the learner's checkpoint and policy rows, or not at all.
    let outcome = |id: &str, kind, at: i64, value| OutcomeUpdate {
        decision: id.into(),
        kind,
        at: Millis(T0 + at),
        value,
    };
    let commit = LearnerCommit {
        consumer: ConsumerCommit {
            expected: 0,
            checkpoint: 7,
            meta: vec![],
            upserts: vec![(1, b"policy".to_vec())],
            deletes: vec![],
        },
        outcomes: vec![
            outcome("d1", OutcomeKind::Delivered, 11, None),
            outcome("d1", OutcomeKind::Opened, 20, None),
            outcome("d1", OutcomeKind::Opened, 25, None),
            outcome("d2", OutcomeKind::Failed, 1_001, None),
            outcome("d4", OutcomeKind::Converted, 30, Some(49.0)),
            outcome("d4", OutcomeKind::Failed, 1_002, None),
        ],
    };
    let stale = LearnerCommit {
        consumer: ConsumerCommit { expected: 3, ..commit.consumer.clone() },
        ..commit.clone()
    };
    assert!(matches!(store.commit_learning("decisions", &ws, stale).await, Err(StoreError::Conflict(_))));
    assert_eq!(
        store.decisions(&ws, &q(|q| q.person = Some(2))).await.unwrap()[0].outcome,
        None,
        "a refused commit writes nothing"
    );
    store.commit_learning("decisions", &ws, commit).await.unwrap();
    assert_eq!(store.consumer_state("decisions", &ws).await.unwrap().unwrap().checkpoint, 7);
    assert_eq!(store.consumer_rows("decisions", &ws).await.unwrap(), [(1, b"policy".to_vec())]);
    let by_id = |v: &[DecisionRecord], id: &str| v.iter().find(|d| d.id == id).unwrap().clone();
    let all = store.decisions(&ws, &q(|_| {})).await.unwrap();
    let d1 = by_id(&all, "d1");
    assert_eq!(
        (d1.delivered_at, d1.opened_at, d1.outcome),
        (Some(Millis(T0 + 11)), Some(Millis(T0 + 20)), None)
    );
    let d2 = by_id(&all, "d2");
    assert_eq!((d2.outcome.as_deref(), d2.outcome_at), (Some("failed"), Some(Millis(T0 + 1_001))));
    let d4 = by_id(&all, "d4");
    assert_eq!(
        (d4.outcome.as_deref(), d4.value),
        (Some("converted"), Some(49.0)),
        "a failure never overrides a conversion"
    );
    // A late conversion overrides the failure.
    let late = LearnerCommit {
        consumer: ConsumerCommit { expected: 7, checkpoint: 9, ..ConsumerCommit::default() },
        outcomes: vec![outcome("d2", OutcomeKind::Converted, 900, None)],
    };
    store.commit_learning("decisions", &ws, late).await.unwrap();
    let d2 = by_id(&store.decisions(&ws, &q(|_| {})).await.unwrap(), "d2");
    assert_eq!((d2.outcome.as_deref(), d2.outcome_at), (Some("converted"), Some(Millis(T0 + 900))));
    // Outside any consumer (a simulation's run), the same rules apply; the checkpoint stays.
    let outside =
        [outcome("d3", OutcomeKind::Clicked, 40, None), outcome("d3", OutcomeKind::Failed, 1_003, None)];
    store.record_outcomes(&ws, &outside).await.unwrap();
    let d3 = by_id(&store.decisions(&ws, &q(|_| {})).await.unwrap(), "d3");
    assert_eq!((d3.clicked_at, d3.outcome.as_deref()), (Some(Millis(T0 + 40)), Some("failed")));
    assert_eq!(store.consumer_state("decisions", &ws).await.unwrap().unwrap().checkpoint, 9);
    store.record_outcomes(&other, &[outcome("d3", OutcomeKind::Opened, 50, None)]).await.unwrap();
    let d3 = by_id(&store.decisions(&ws, &q(|_| {})).await.unwrap(), "d3");
    assert_eq!(d3.opened_at, None, "outcomes belong to their workspace");
}
