//! The engine through its public API: holdouts, fatigue and priority, attribution and learning.

use serde_json::{Map, Value, json};
use whisperer_decide::{
    CampaignSpec, DecisionStatus, Draw, Engine, FatigueRules, OutcomeKind, PolicyState, UserContext,
};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

fn campaign(id: &str, extra: &str) -> whisperer_decide::Campaign {
    let text = format!(
        r#"
id = "{id}"
trigger = {{ type = "api" }}
{extra}
[goal]
event = "Session Started"
within = "3d"
[actions]
channels = ["email", "push"]
contents = [{{ id = "a", template = "t" }}, {{ id = "b", template = "u" }}]
"#
    );
    CampaignSpec::parse(&text).unwrap().compile(1).unwrap()
}

fn rules() -> FatigueRules {
    FatigueRules { quiet_hours: None, ..FatigueRules::default() }
}

fn user(person: i64, traits: &Map<String, Value>) -> UserContext<'_> {
    UserContext { known: true, ..UserContext::unknown(person, traits) }
}

fn draw<'a>(id: &'a str, unit: &'a str, now: i64) -> Draw<'a> {
    Draw { decision_id: id, unit, u: 0.5, now }
}

#[test]
fn holdout_is_stable_and_near_its_share() {
    let mut engine = Engine::new(FatigueRules { caps: Default::default(), min_gap_minutes: 0, ..rules() });
    engine.put_campaign(campaign("c", "holdout_percent = 30"), None);
    let traits = Map::new();
    let mut held = 0;
    for p in 0..2_000 {
        let unit = format!("user-{p}");
        let a = engine.decide("c", &user(p, &traits), Some(&unit), draw("d", &unit, T0)).unwrap();
        let b = engine.decide("c", &user(p, &traits), Some(&unit), draw("e", &unit, T0 + 30 * DAY)).unwrap();
        assert_eq!(a.holdout, b.holdout, "holdout membership is stable per user");
        if a.holdout {
            held += 1;
            assert_eq!((a.status, a.arm, a.propensity), (DecisionStatus::Holdout, None, 0.3));
        } else {
            assert!(a.arm.is_some() && a.propensity > 0.0 && a.propensity <= 1.0);
        }
    }
    assert!((520..680).contains(&held), "{held} of 2000 held out");
}

#[test]
fn fatigue_and_priority_name_their_rule() {
    let mut engine = Engine::new(rules());
    engine.put_campaign(campaign("high", "priority = 10"), None);
    engine.put_campaign(campaign("low", "priority = 1"), None);
    let traits = Map::new();
    let u = user(1, &traits);
    let decided = engine.decide_many(&[1, 0], &u, Some("u1"), &mut |i| Draw {
        decision_id: if i == 0 { "d-high" } else { "d-low" },
        unit: "u1",
        u: 0.3,
        now: T0,
    });
    assert_eq!(decided.iter().map(|d| d.campaign.as_str()).collect::<Vec<_>>(), ["high", "low"]);
    assert_eq!(decided[0].status, DecisionStatus::Send);
    assert_eq!(
        (decided[1].status, decided[1].explanation.rule.as_deref()),
        (DecisionStatus::Suppressed, Some("priority"))
    );
    // Two hours later the minimum gap (4 h) stops the next message, and says so.
    let later = engine.decide("low", &u, Some("u1"), draw("d2", "u1", T0 + 2 * 3_600_000)).unwrap();
    assert_eq!(
        (later.status, later.explanation.rule.as_deref()),
        (DecisionStatus::Suppressed, Some("min_gap"))
    );
    let check = later.explanation.fatigue.iter().find(|c| c.rule == "min_gap").unwrap();
    assert!(!check.passed && check.detail.contains("2 h away, minimum 4 h"), "{check:?}");
    // Quiet hours defer to the local morning.
    engine.set_rules(FatigueRules::default());
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let night = UserContext { zone: Some(tokyo), ..user(2, &traits) };
    let d = engine.decide("high", &night, Some("u2"), draw("d3", "u2", T0)).unwrap(); // 19:00 Tokyo: fine
    assert_eq!(d.deliver_at, Some(T0));
    let d = engine.decide("low", &night, Some("u2"), draw("d4", "u2", T0 + 12 * 3_600_000)).unwrap(); // 07:00 Tokyo
    assert_eq!(d.status, DecisionStatus::Send);
    assert_eq!(d.deliver_at, Some(T0 + 13 * 3_600_000), "deferred to 08:00 Tokyo");
    assert_eq!(d.explanation.rule.as_deref(), Some("quiet_hours"));
}

#[test]
fn outcomes_teach_the_policy_once() {
    let mut engine = Engine::new(rules());
    engine.put_campaign(campaign("c", ""), None);
    let traits = Map::new();
    let d = engine.decide("c", &user(7, &traits), Some("u7"), draw("d1", "u7", T0)).unwrap();
    let arm = d.arm.unwrap();
    let mut out = Vec::new();
    // Before the decision: not attributed.
    engine.observe(7, "Session Started", T0 - 1, None, &mut out);
    assert!(out.is_empty());
    let props = json!({"decision_id": "d1"});
    engine.observe(7, "Message Opened", T0 + 10, props.as_object(), &mut out);
    engine.observe(7, "Session Started", T0 + DAY, None, &mut out);
    engine.observe(7, "Session Started", T0 + DAY + 5, None, &mut out); // a second one counts once
    let kinds: Vec<_> = out.iter().map(|o| (o.decision.as_str(), o.kind)).collect();
    assert_eq!(kinds, [("d1", OutcomeKind::Opened), ("d1", OutcomeKind::Converted)]);
    let counts = &engine.policy("c").unwrap().arms[arm];
    assert_eq!((counts.trials, counts.successes), (1.0, 1.0));

    // A decision whose window closes without the goal fails; a late goal event inside the
    // window (delivered after the close) corrects it, once.
    let d2 = engine.decide("c", &user(8, &traits), Some("u8"), draw("d2", "u8", T0)).unwrap();
    let arm2 = d2.arm.unwrap();
    out.clear();
    engine.expire(T0 + 4 * DAY, &mut out);
    assert_eq!(
        out.iter().map(|o| (o.decision.as_str(), o.kind)).collect::<Vec<_>>(),
        [("d2", OutcomeKind::Failed)]
    );
    let before = engine.policy("c").unwrap().arms[arm2].clone();
    out.clear();
    engine.observe(8, "Session Started", T0 + 2 * DAY, None, &mut out);
    engine.observe(8, "Session Started", T0 + 2 * DAY + 1, None, &mut out);
    assert_eq!(out.len(), 1);
    let after = &engine.policy("c").unwrap().arms[arm2];
    assert_eq!((after.trials, after.successes), (before.trials, before.successes + 1.0));
    // After the grace period the decision is forgotten.
    engine.expire(T0 + 20 * DAY, &mut out);
    assert_eq!(engine.waiting(), 0);

    // Policy state survives a restart (JSON) and is kept when the campaign is re-applied.
    let (_, state) = engine.take_dirty_policies().into_iter().next().unwrap();
    let restored = PolicyState::from_json(&state.to_json()).unwrap();
    let mut fresh = Engine::new(rules());
    fresh.put_campaign(campaign("c", ""), Some(restored));
    assert_eq!(fresh.policy("c").unwrap().arms, state.arms);
}

#[test]
fn audience_and_unknown_users() {
    let mut engine = Engine::new(rules());
    engine.put_campaign(campaign("c", r#"audience = 'traits.plan == "pro"'"#), None);
    let pro = json!({"plan": "pro"});
    let free = json!({"plan": "free"});
    let d = engine.decide("c", &user(1, pro.as_object().unwrap()), None, draw("a", "1", T0)).unwrap();
    assert_eq!(d.status, DecisionStatus::Send);
    let d = engine.decide("c", &user(2, free.as_object().unwrap()), None, draw("b", "2", T0)).unwrap();
    assert_eq!((d.status, d.explanation.audience), (DecisionStatus::NotEligible, false));
    let empty = Map::new();
    let d = engine.decide("c", &UserContext::unknown(-3, &empty), None, draw("c", "3", T0)).unwrap();
    assert!(d.explanation.notes.iter().any(|n| n.contains("unknown user")), "{:?}", d.explanation);
    assert!(engine.decide("nope", &user(1, &empty), None, draw("d", "1", T0)).is_err());
}

#[test]
fn unsubscribes_suppress_the_channel() {
    let mut engine = Engine::new(FatigueRules { min_gap_minutes: 0, caps: Default::default(), ..rules() });
    let only_email = CampaignSpec::parse(
        r#"
id = "e"
trigger = { type = "api" }
[goal]
event = "Session Started"
within = "1d"
[actions]
channels = ["email"]
contents = [{ id = "a", template = "t" }]
"#,
    )
    .unwrap()
    .compile(1)
    .unwrap();
    engine.put_campaign(only_email, None);
    let traits = Map::new();
    let mut out = Vec::new();
    engine.observe(5, "Unsubscribed", T0, json!({"channel": "email"}).as_object(), &mut out);
    let d = engine.decide("e", &user(5, &traits), None, draw("x", "5", T0 + 1)).unwrap();
    assert_eq!((d.status, d.explanation.rule.as_deref()), (DecisionStatus::Suppressed, Some("unsubscribed")));
}
