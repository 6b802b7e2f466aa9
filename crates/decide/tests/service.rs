//! The decision service on real stores (SQLite always, PostgreSQL when
//! `WHISPERER_TEST_POSTGRES_URL` is set): decisions stored before they are answered, outcomes
//! learned from the log and committed with the policy state, nothing lost or counted twice
//! across a restart, campaigns picked up as soon as they are applied, triggers decided once.

use std::sync::Arc;

use whisperer_core::{EventType, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_decide::service::{DecideRequest, DecisionService, LEARNER, ServiceError};
use whisperer_decide::{CampaignSpec, DecisionStatus, PolicyState};
use whisperer_store::{DecisionQuery, Store};
use whisperer_store_sqlite::SqliteStore;

const CAMPAIGN: &str = r#"
id = "nudge"
trigger = { type = "api" }
defer_in_quiet_hours = false
[goal]
event = "Session Started"
within = "1d"
[actions]
channels = ["in_app"]
contents = [{ id = "a", template = "t" }, { id = "b", template = "u" }]
"#;

fn event(ws: &WorkspaceId, id: &str, kind: EventType, name: Option<&str>, user: &str, at: i64) -> NewEvent {
    NewEvent {
        workspace_id: ws.clone(),
        message_id: id.into(),
        event_type: kind,
        name: name.map(str::to_owned),
        user_id: Some(user.into()),
        anonymous_id: None,
        previous_id: None,
        timestamp: Millis(at),
        received_at: Millis(at),
        raw: format!(r#"{{"type":"{}","userId":"{user}","properties":{{}}}}"#, kind.as_str()),
        enrichment: "{}".into(),
    }
}

async fn apply(store: &dyn Store, ws: &WorkspaceId, text: &str) {
    let spec = CampaignSpec::parse(text).unwrap();
    store.put_campaign(ws, &spec.id, &spec.to_json(), Millis::now()).await.unwrap();
}

/// A fresh store of each configured backend, with what must live as long as it.
async fn stores() -> Vec<(Arc<dyn Store>, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out: Vec<(Arc<dyn Store>, Box<dyn std::any::Any>)> =
        vec![(Arc::new(SqliteStore::open(dir.path()).unwrap()), Box::new(dir))];
    if let Some((store, schema)) = whisperer_store_postgres::testing::fresh().await {
        out.push((Arc::new(store), Box::new(schema)));
    }
    out
}

#[tokio::test]
async fn decisions_are_stored_learned_from_and_survive_restarts() {
    for (store, _guard) in stores().await {
        stored_learned_and_restarted(store).await;
    }
}

async fn stored_learned_and_restarted(store: Arc<dyn Store>) {
    let ws = Workspace { id: WorkspaceId::generate(), name: "svc".into(), created_at: Millis::now() };
    store.create_workspace(&ws, &[]).await.unwrap();
    let ws = ws.id;
    let now = Millis::now().0;
    store
        .append(vec![event(&ws, "m1", EventType::Identify, None, "ada", now - 1_000)], Millis(0))
        .await
        .unwrap();
    apply(store.as_ref(), &ws, CAMPAIGN).await;
    // The wall clock must not decide the test: no quiet hours.
    store.set_setting(&ws, "fatigue", r#"{"quiet_hours": null}"#, Millis::now()).await.unwrap();

    let service = DecisionService::new(store.clone(), None, None);
    let req = DecideRequest { user_id: "ada", campaign: "nudge", context: None, deliver: true };
    let d = service.decide(&ws, req).await.unwrap();
    assert_eq!(d.status, DecisionStatus::Send, "{d:?}");
    assert!(d.id.starts_with("dec_") && d.propensity > 0.0);
    // Delivered by Whisperer: the message was enqueued with the decision.
    let queued = store.message(&ws, &format!("msg_{}", d.id)).await.unwrap().expect("enqueued");
    assert_eq!((queued.decision_id.as_deref(), queued.channel.as_str()), (Some(d.id.as_str()), "in_app"));
    assert!(queued.body.contains(r#""campaign":"nudge""#), "{}", queued.body);
    let stored = store.decisions(&ws, &DecisionQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].id.as_str(), stored[0].arm.as_ref()), (d.id.as_str(), d.arm_name.as_ref()));

    // The user comes back: the learner attributes it and commits the policy with its checkpoint.
    store
        .append(
            vec![event(&ws, "m2", EventType::Track, Some("Session Started"), "ada", now + 60_000)],
            Millis(0),
        )
        .await
        .unwrap();
    service.tick(&ws).await.unwrap();
    let stored = store.decisions(&ws, &DecisionQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(stored[0].outcome.as_deref(), Some("converted"));
    let rows = store.consumer_rows(LEARNER, &ws).await.unwrap();
    assert_eq!(rows.len(), 1);
    let policy = PolicyState::from_json(std::str::from_utf8(&rows[0].1).unwrap()).unwrap();
    let arm = d.arm.unwrap();
    assert_eq!((policy.arms[arm].trials, policy.arms[arm].successes), (1.0, 1.0));
    let checkpoint = store.consumer_state(LEARNER, &ws).await.unwrap().unwrap().checkpoint;
    assert!(checkpoint >= 2);

    // A restarted service reads the same state and does not learn the same outcome twice.
    drop(service);
    let service = DecisionService::new(store.clone(), None, None);
    store
        .append(
            vec![event(&ws, "m3", EventType::Track, Some("Session Started"), "ada", now + 120_000)],
            Millis(0),
        )
        .await
        .unwrap();
    service.tick(&ws).await.unwrap();
    let rows = store.consumer_rows(LEARNER, &ws).await.unwrap();
    let policy = PolicyState::from_json(std::str::from_utf8(&rows[0].1).unwrap()).unwrap();
    assert_eq!((policy.arms[arm].trials, policy.arms[arm].successes), (1.0, 1.0), "counted once");

    // Unknown users are decided with defaults and say so; unknown campaigns are an error;
    // a campaign applied now is usable at once.
    let d = service
        .decide(&ws, DecideRequest { user_id: "nobody", campaign: "nudge", context: None, deliver: false })
        .await
        .unwrap();
    assert!(d.person < 0 && d.explanation.notes.iter().any(|n| n.contains("unknown user")), "{d:?}");
    if d.status == DecisionStatus::Send {
        assert!(store.message(&ws, &format!("msg_{}", d.id)).await.unwrap().is_none(), "the caller delivers");
    }
    let e = service
        .decide(&ws, DecideRequest { user_id: "ada", campaign: "later", context: None, deliver: false })
        .await;
    assert!(matches!(e, Err(ServiceError::UnknownCampaign(c)) if c == "later"));
    apply(store.as_ref(), &ws, &CAMPAIGN.replace("id = \"nudge\"", "id = \"later\"")).await;
    let d = service
        .decide(&ws, DecideRequest { user_id: "ada", campaign: "later", context: None, deliver: false })
        .await
        .unwrap();
    assert_eq!(d.campaign, "later");
}

fn track(ws: &WorkspaceId, id: &str, name: &str, user: &str, at: i64, properties: &str) -> NewEvent {
    NewEvent {
        raw: format!(r#"{{"type":"track","event":"{name}","userId":"{user}","properties":{properties}}}"#),
        ..event(ws, id, EventType::Track, Some(name), user, at)
    }
}

#[tokio::test]
async fn triggers_decide_once_per_cause_even_when_the_log_is_replayed() {
    for (store, _guard) in stores().await {
        triggers_once(store).await;
    }
}

async fn triggers_once(store: Arc<dyn Store>) {
    let ws = Workspace { id: WorkspaceId::generate(), name: "triggers".into(), created_at: Millis::now() };
    store.create_workspace(&ws, &[]).await.unwrap();
    let ws = ws.id;
    store
        .set_setting(
            &ws,
            "fatigue",
            r#"{"quiet_hours": null, "min_gap_minutes": 0, "caps": {}}"#,
            Millis::now(),
        )
        .await
        .unwrap();
    let on = |id: &str, trigger: &str| {
        CAMPAIGN.replace("id = \"nudge\"", &format!("id = \"{id}\"")).replace("{ type = \"api\" }", trigger)
    };
    apply(store.as_ref(), &ws, &on("welcome", r#"{ type = "event", event = "Signed Up" }"#)).await;
    apply(store.as_ref(), &ws, &on("rescue", r#"{ type = "stage", to = "at-risk" }"#)).await;
    apply(store.as_ref(), &ws, &on("pros", r#"{ type = "segment", segment = 'traits.plan == "pro"' }"#))
        .await;
    let now = Millis::now().0;
    let mut log = vec![
        event(&ws, "m1", EventType::Identify, None, "ada", now),
        track(&ws, "m2", "Signed Up", "ada", now + 1, "{}"),
        track(&ws, "m3", "Lifecycle Stage Changed", "bob", now + 2, r#"{"from":"engaged","to":"at-risk"}"#),
        track(&ws, "m4", "Lifecycle Stage Changed", "bob", now + 3, r#"{"from":"engaged","to":"dormant"}"#),
    ];
    // History does not trigger: an event received before the campaigns were applied, and an
    // imported one (received now, but from a month ago).
    log.push(track(&ws, "h1", "Signed Up", "old", now - 60_000, "{}"));
    let mut imported = track(&ws, "h2", "Signed Up", "imported", now - 30 * 86_400_000, "{}");
    imported.received_at = Millis(now);
    log.push(imported);
    let mut pro = event(&ws, "m5", EventType::Identify, None, "cyd", now + 4);
    pro.raw = r#"{"type":"identify","userId":"cyd","traits":{"plan":"pro"}}"#.into();
    log.push(pro);
    log.push(track(&ws, "m6", "Page Viewed", "cyd", now + 5, "{}"));
    store.append(log, Millis(0)).await.unwrap();

    let service = DecisionService::new(store.clone(), None, None);
    service.tick(&ws).await.unwrap();
    let all = || async {
        let mut v: Vec<(String, String)> = store
            .decisions(&ws, &DecisionQuery { limit: 100, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.campaign, d.user_id.unwrap()))
            .collect();
        v.sort();
        v
    };
    let expected =
        [("pros", "cyd"), ("rescue", "bob"), ("welcome", "ada")].map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(all().await, expected, "one decision per trigger; the segment fires on entry only");

    // A crash after the decisions but before the learner's commit replays the same events:
    // rewind the checkpoint and start a new service.
    let at = store.consumer_state(LEARNER, &ws).await.unwrap().unwrap().checkpoint;
    let rewind = whisperer_store::ConsumerCommit { expected: at, checkpoint: 0, ..Default::default() };
    store.commit_consumer(LEARNER, &ws, rewind).await.unwrap();
    let service = DecisionService::new(store.clone(), None, None);
    service.tick(&ws).await.unwrap();
    assert_eq!(all().await, expected, "replayed triggers decide nobody twice");

    // Segment membership survives a restart: cyd, still a pro, is not entering again.
    store.append(vec![track(&ws, "m7", "Page Viewed", "cyd", now + 6, "{}")], Millis(0)).await.unwrap();
    let service = DecisionService::new(store.clone(), None, None);
    service.tick(&ws).await.unwrap();
    assert_eq!(all().await, expected, "no second entry after a restart");
}
