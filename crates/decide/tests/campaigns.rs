//! Campaign definitions: the shipped examples compile, and every mistake is named by field.

use whisperer_decide::{CampaignSpec, PolicyConfig, SendTime, Trigger};

fn example(name: &str) -> String {
    let path = format!("{}/../../examples/campaigns/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn shipped_examples_compile() {
    let win_back = CampaignSpec::parse(&example("win-back.toml")).unwrap();
    assert_eq!(win_back.trigger, Trigger::Stage { to: "at-risk".into(), from: None });
    assert_eq!(win_back.holdout_percent, 20.0);
    let c = win_back.compile(1).unwrap();
    assert_eq!(c.arms.len(), 8);
    assert_eq!(c.arms[0].name, "email/check-in");
    assert_eq!(c.arms[0].send_time, SendTime::UsualHour);
    assert_eq!(c.goal_window_ms, 7 * 86_400_000);
    let onboarding = CampaignSpec::parse(&example("onboarding.toml")).unwrap();
    assert!(matches!(onboarding.policy, PolicyConfig::Contextual { .. }));
    assert_eq!(onboarding.compile(1).unwrap().context.dim(), 7);
    let ab = CampaignSpec::parse(&example("upgrade-ab.toml")).unwrap();
    assert_eq!(ab.policy, PolicyConfig::Ab { weights: vec![1.0; 3] });
    // Stored as canonical JSON and read back: the same campaign.
    for spec in [win_back, onboarding, ab] {
        assert_eq!(CampaignSpec::parse(&spec.to_json()).unwrap(), spec);
    }
}

fn errors(text: &str) -> Vec<String> {
    CampaignSpec::parse(text).unwrap_err().0.into_iter().map(|e| e.to_string()).collect()
}

const MINIMAL: &str = r#"
id = "c1"
trigger = { type = "api" }
[goal]
event = "Session Started"
within = "3d"
[actions]
channels = ["email"]
contents = [{ id = "a", template = "t" }]
"#;

#[test]
fn minimal_campaign_gets_defaults() {
    let spec = CampaignSpec::parse(MINIMAL).unwrap();
    assert_eq!(spec.holdout_percent, 0.0);
    assert!(matches!(spec.policy, PolicyConfig::Thompson { .. }));
    assert_eq!(spec.actions.send_times, [SendTime::Now]);
    assert!(spec.defer_in_quiet_hours);
}

#[test]
fn every_problem_is_named_by_field() {
    let bad = r#"
id = "has space"
priority = 1.5
holdout_percent = 120
cooldown = "3 days"
colour = "blue"
audience = 'features.sesions_7d > 1'
trigger = { type = "stage", to = "at_rsk" }
[goal]
event = ""
within = "3x"
[actions]
channels = ["email", "fax", "email"]
send_times = ["later"]
[[actions.contents]]
id = "a"
[[actions.contents]]
id = "b"
template = "t"
tone = "warm"
[policy]
kind = "epsilon_greedy"
epsilon = 1.5
"#;
    let e = errors(bad);
    let expect = [
        "id: must be 1-64 letters, digits, '-' or '_', got \"has space\"",
        "priority: must be a whole number from -1000 to 1000, got 1.5",
        "holdout_percent: must be from 0 to 90, got 120",
        "colour: unknown field",
        "trigger.to: unknown stage \"at_rsk\"",
        "goal.event: must not be empty",
        "goal.within: unknown unit \"x\"",
        "actions.channels[1]: unknown channel \"fax\"",
        "actions.channels[2]: email is listed twice",
        "actions.send_times[0]: must be \"now\" or \"usual_hour\", got \"later\"",
        "actions.contents[0]: needs a template or a brief",
        "actions.contents[1].tone: unknown field",
        "policy.epsilon: must be from 0 to 1, got 1.5",
    ];
    for want in expect {
        assert!(e.iter().any(|got| got.starts_with(want)), "missing {want:?} in {e:#?}");
    }
}

#[test]
fn expressions_and_durations_are_checked_after_the_shape() {
    let with = |extra: &str| MINIMAL.replace("[goal]", &format!("{extra}\n[goal]"));
    let e = errors(&with("audience = 'features.sesions_7d > 1'"));
    assert!(e[0].starts_with("audience: 1:1: unknown feature \"sesions_7d\""), "{e:?}");
    let e = errors(&with("audience = 'stage = \"engaged\"'"));
    assert!(e[0].starts_with("audience: 1:7:"), "{e:?}");
    let e = errors(&with("cooldown = \"3 days\""));
    assert!(e[0].starts_with("cooldown: unknown unit"), "{e:?}");
    let e = errors(&MINIMAL.replace("{ type = \"api\" }", "{ type = \"schedule\", every = \"10m\" }"));
    assert_eq!(e, ["trigger.every: must be at least 1h"]);
    let e = errors(&MINIMAL.replace("{ type = \"api\" }", "{ type = \"churn\", above = 2 }"));
    assert_eq!(e, ["trigger.above: must be a probability between 0 and 1, got 2"]);
    let e = errors(&MINIMAL.replace("{ type = \"api\" }", "{ type = \"cron\" }"));
    assert!(e[0].starts_with("trigger.type: unknown trigger \"cron\""), "{e:?}");
    let e = errors(&format!("{MINIMAL}\n[policy]\nkind = \"ab\"\nweights = [1, 2]"));
    assert_eq!(e, ["policy.weights: has 2 weights for 1 arms"]);
    let e = errors(&format!("{MINIMAL}\n[policy]\nkind = \"contextual\"\nfeatures = [\"recency\"]"));
    assert!(e[0].starts_with("policy.features: unknown feature \"recency\""), "{e:?}");
    let e = errors("id = ");
    assert!(e[0].starts_with("invalid TOML"), "{e:?}");
    let e = errors(r#"{"id": "x"}"#);
    assert!(
        e.contains(&"trigger: is required".to_owned()) && e.contains(&"goal: is required".to_owned()),
        "{e:?}"
    );
}
