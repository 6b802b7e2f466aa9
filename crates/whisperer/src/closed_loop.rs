//! `whisperer simulate --campaigns FILE…`: the decision engine run against a simulated
//! population, in process. Events flow from the simulator into live profiles; stage changes and
//! events trigger campaigns; the engine decides (holdout, policy, fatigue); a sent decision goes
//! through the real delivery code: its template is rendered for the user (traits, features,
//! scores, locale) with signed tracking links and passed through the compliance gate
//! (`whisperer-deliver`), then routed (`whisperer-channels`) to a [`SimulatorProvider`], whose
//! `send` delivers the message into the simulation. What the simulated user does with it
//! (delivered, opened, clicked, unsubscribed) comes back like a provider's status callbacks and
//! becomes events the engine learns from. The simulator's oracle scores every sent decision
//! against the best arm, so the report says what the policy cost compared with knowing the
//! truth, and with choosing at random.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value, json};
use whisperer_channels::router::{BreakerConfig, Outcome as Routed, Route, Router, Slot};
use whisperer_channels::{
    DeliveryStatus as Status, FailureKind, Message as Outgoing, Provider, Receipt, Recipient, SendError,
    StatusEvent,
};
use whisperer_compliance::{ComplianceRules, RulesConfig};
use whisperer_core::{EventType, Millis, WorkspaceId};
use whisperer_decide::{
    Campaign, CampaignSpec, Channel, DecisionStatus, Draw, Engine, FatigueRules, OutcomeKind, UserContext,
};
use whisperer_deliver::{CompiledTemplate, Composer, TemplateDefinition, TrackingKey, UserData};
use whisperer_profiles::{Engagement, ProfileTable, Tracker};
use whisperer_sim::{Angle, DeliveryStatus, Intervention, Message, SimConfig, Simulation, user_id_of};
use whisperer_store::{DecisionRecord, OutcomeUpdate};

/// Decisions are taken at the end of each step of simulated time.
const STEP_MS: i64 = 15 * 60_000;
/// Stages that change with time alone are found by a sweep this often.
const SWEEP_MS: i64 = 6 * 3_600_000;
/// Policies take a new snapshot of what they learned this often.
const REFRESH_MS: i64 = 3_600_000;
/// The simulated workspace's postal address: its compliance rules require it in marketing email.
pub const POSTAL_ADDRESS: &str = "Whisperer Simulations Ltd, 1 Example Street, Springfield 12345";
/// Where the simulated workspace's tracking links point (nothing answers there: the simulator
/// reports opens and clicks itself).
const TRACKING_BASE_URL: &str = "https://track.whisperer.example";
/// Channels the simulator can deliver on (webhooks reach the customer's systems, not the user).
const SIMULATED_CHANNELS: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp];

/// What a closed-loop run measured.
#[derive(Debug, Serialize)]
pub struct LoopReport {
    pub campaigns: Vec<String>,
    pub users: u32,
    pub days: u32,
    pub seed: u64,
    pub events: u64,
    pub decisions: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    pub suppressed_by_rule: BTreeMap<String, u64>,
    /// Decisions whose goal window closed, per group (intention to treat: every decision not in
    /// the holdout counts as treated, sent or not).
    pub treated: Group,
    pub holdout: Group,
    /// Goal rate of treated minus holdout, with a 95 % confidence interval.
    /// Null when there is no holdout (or no treated decision) to compare.
    pub uplift: Option<f64>,
    pub uplift_ci_low: Option<f64>,
    pub uplift_ci_high: Option<f64>,
    /// Cumulative regret over sent decisions, in expected goal probability: the oracle arm's
    /// uplift minus the chosen arm's (policy), or minus the mean arm's (uniform random).
    pub regret_policy: f64,
    pub regret_random: f64,
    pub scored_decisions: u64,
    /// Regret per scored decision, by quarter of the run: learning shows as a falling policy line.
    pub regret_by_quarter: Vec<QuarterRegret>,
    pub arms: Vec<ArmReport>,
    pub opened: u64,
    pub clicked: u64,
    pub unsubscribed: u64,
    /// What became of the sent decisions' messages: rendered, gated, routed.
    pub delivery: DeliveryReport,
    /// Every decision as the audit trail stores it (when asked for).
    #[serde(skip)]
    pub records: Vec<DecisionRecord>,
    /// What came of them, in the order it happened (stored after the decisions).
    #[serde(skip)]
    pub outcomes: Vec<OutcomeUpdate>,
    /// Every message and what became of it, in decision order (when records are asked for).
    #[serde(skip)]
    pub messages: Vec<MessageLog>,
}

/// The messages of sent decisions, step by step: content, gate, router, simulated user.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryReport {
    /// Sent decisions, one message each.
    pub messages: u64,
    /// Messages whose template rendered for the user (whether the gate let them out or not).
    pub rendered: u64,
    /// Messages that could not be rendered, by reason (`render_error`: the template needs a
    /// variable the user lacks; `no_recipient`: no address for the channel; `no_template`).
    pub not_rendered: BTreeMap<String, u64>,
    /// Rendered messages the compliance gate stopped, and the rules they broke (a message may
    /// break several).
    pub blocked: u64,
    pub blocked_by_rule: BTreeMap<String, u64>,
    /// Messages a provider accepted.
    pub sent: u64,
    /// Messages no provider could deliver, by the provider's error code (`unsubscribed`,
    /// `unknown_address`, …).
    pub failed: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    pub by_provider: BTreeMap<String, ProviderCount>,
    /// Sent messages by the template locale they were rendered in.
    pub by_locale: BTreeMap<String, u64>,
    /// Messages that reached simulated users, as the simulator counts them (messages scheduled
    /// past the end of the run are not among them).
    pub simulated_deliveries: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct ProviderCount {
    pub sent: u64,
    pub failed: u64,
}

/// One message of the run, as an outbox would keep it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageLog {
    pub decision: String,
    pub person: i64,
    pub channel: Channel,
    /// `sent`, the compose error code (`render_error`, `compliance`, …) or the provider's
    /// failure code.
    pub result: String,
    pub opened: bool,
    pub clicked: bool,
    pub unsubscribed: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Group {
    pub decisions: u64,
    pub converted: u64,
    pub rate: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct QuarterRegret {
    pub decisions: u64,
    pub policy: f64,
    pub random: f64,
}

#[derive(Debug, Serialize)]
pub struct ArmReport {
    pub campaign: String,
    pub arm: String,
    pub chosen: u64,
    /// How often the oracle said this arm was best for the user.
    pub oracle_best: u64,
    pub mean_oracle_uplift: f64,
}

struct Scored {
    at: i64,
    regret_policy: f64,
    regret_random: f64,
}

/// Reads campaign files; every problem is reported with its file.
pub fn load_campaigns(paths: &[PathBuf]) -> anyhow::Result<Vec<Campaign>> {
    let mut out = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let spec = CampaignSpec::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        out.push(spec.compile(1).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    }
    if out.is_empty() {
        bail!("no campaign files given");
    }
    Ok(out)
}

/// Message templates by id (a template's id is its file name without `.json`).
pub type Templates = BTreeMap<String, Arc<CompiledTemplate>>;

/// Reads every `*.json` template definition in `dir`; a definition that does not compile is
/// reported with its file.
pub fn load_templates(dir: &Path) -> anyhow::Result<Templates> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the templates directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot read {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out = Templates::new();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let compiled =
            TemplateDefinition::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        out.insert(id, Arc::new(compiled));
    }
    Ok(out)
}

/// Where templates are read from without `--templates`: `examples/templates` under the working
/// directory, else the `templates` directory beside the first campaign file's directory (so
/// `examples/campaigns/x.toml` finds `examples/templates` from anywhere).
pub fn default_templates_dir(campaign_files: &[PathBuf]) -> PathBuf {
    let here = PathBuf::from("examples/templates");
    if here.is_dir() {
        return here;
    }
    campaign_files
        .first()
        .and_then(|f| f.parent())
        .and_then(|d| d.parent())
        .map(|d| d.join("templates"))
        .filter(|d| d.is_dir())
        .unwrap_or(here)
}

/// The example templates, built into the binary so the demo needs no files beside it.
pub fn example_templates() -> anyhow::Result<Templates> {
    macro_rules! example {
        ($id:literal) => {
            ($id, include_str!(concat!("../../../examples/templates/", $id, ".json")))
        };
    }
    let files = [
        example!("onboarding-getting-started"),
        example!("onboarding-feature-tip"),
        example!("win-back-check-in"),
        example!("win-back-discount"),
        example!("win-back-feature-tip"),
        example!("win-back-social-proof"),
        example!("upgrade-discount"),
        example!("upgrade-social-proof"),
        example!("upgrade-feature-tip"),
    ];
    files
        .into_iter()
        .map(|(id, text)| {
            let compiled =
                TemplateDefinition::parse(text).map_err(|e| anyhow::anyhow!("template {id}: {e}"))?;
            Ok((id.to_owned(), Arc::new(compiled)))
        })
        .collect()
}

/// The simulator's angle for a content: its `angle` label, else its id.
fn angle_of(campaign: &Campaign, content: usize) -> anyhow::Result<Angle> {
    let c = &campaign.spec.actions.contents[content];
    let label = c.angle.as_deref().unwrap_or(&c.id).replace('-', "_");
    Angle::parse(&label).with_context(|| {
        format!(
            "campaign {}: content {:?} has angle {label:?}, which the simulator does not know (known: {})",
            campaign.spec.id,
            c.id,
            Angle::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// Runs the population with the campaigns, sending the chosen messages through `templates`,
/// the compliance gate and a router to the simulated users; `progress` is told the simulated
/// day now and then. With `keep_records`, the report holds every decision as the audit trail
/// would store it, and every message.
pub async fn run(
    config: SimConfig,
    campaigns: Vec<Campaign>,
    templates: Templates,
    keep_records: bool,
    mut progress: impl FnMut(u32),
) -> anyhow::Result<LoopReport> {
    let mut angles = HashMap::new();
    for c in &campaigns {
        for (i, content) in c.spec.actions.contents.iter().enumerate() {
            angles.insert((c.spec.id.clone(), content.id.clone()), angle_of(c, i)?);
            if let Some(t) = &content.template
                && !templates.contains_key(t)
            {
                bail!(
                    "campaign {}: content {:?} names template {t:?}, which is not among the templates ({})",
                    c.spec.id,
                    content.id,
                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    let (users, seed) = (config.users, config.seed);
    let days = ((config.end.0 - config.start.0) / 86_400_000) as u32;
    let (start, end) = (config.start.0, config.end.0);
    let sim = Arc::new(Mutex::new(Simulation::new(config).context("invalid simulation options")?));
    let ws = WorkspaceId::generate();
    let delivery = Delivery::new(&ws, seed, sim.clone(), angles, templates)?;
    let mut engine = Engine::new(FatigueRules::default());
    let ids: Vec<String> = campaigns.iter().map(|c| c.spec.id.clone()).collect();
    let mut arm_stats: Vec<Vec<(u64, u64, f64, u64)>> =
        campaigns.iter().map(|c| vec![(0, 0, 0.0, 0); c.arms.len()]).collect();
    for c in campaigns {
        engine.put_campaign(c, None);
    }
    let mut report = LoopReport {
        campaigns: ids.clone(),
        users,
        days,
        seed,
        events: 0,
        decisions: 0,
        by_status: BTreeMap::new(),
        suppressed_by_rule: BTreeMap::new(),
        treated: Group::default(),
        holdout: Group::default(),
        uplift: None,
        uplift_ci_low: None,
        uplift_ci_high: None,
        regret_policy: 0.0,
        regret_random: 0.0,
        scored_decisions: 0,
        regret_by_quarter: Vec::new(),
        arms: Vec::new(),
        opened: 0,
        clicked: 0,
        unsubscribed: 0,
        delivery: DeliveryReport::default(),
        records: Vec::new(),
        outcomes: Vec::new(),
        messages: Vec::new(),
    };
    let mut tracker = Tracker::default();
    let mut profiles = ProfileTable::default();
    let mut traits: HashMap<i64, Map<String, Value>> = HashMap::new();
    // Decision id → (holdout, still counted) for the uplift; outcomes settle each.
    let mut groups: HashMap<String, bool> = HashMap::new();
    let mut scored: Vec<Scored> = Vec::new();
    let mut batch: Vec<whisperer_core::StoredEvent> = Vec::new();
    let mut transitions = Vec::new();
    let mut outcomes = Vec::new();
    let mut triggered: Vec<(i64, usize)> = Vec::new();
    let mut fired = Vec::new();
    let mut seq = 0i64;
    let mut next_id = 0u64;
    // Policy draws, seeded apart from the simulator's own streams.
    let mut draws = rand::rngs::SmallRng::seed_from_u64(seed ^ 0xD1B5_4A32_D192_ED03);
    let mut rng = move || draws.random::<f64>();
    let (mut last_sweep, mut last_refresh) = (start, start);
    let mut t = start;
    while t < end {
        t = (t + STEP_MS).min(end);
        batch.clear();
        lock(&sim).advance_to(Millis(t), |m: &Message<'_>| {
            seq += 1;
            batch.push(m.to_stored_event(&ws, seq));
        });
        report.events += batch.len() as u64;
        triggered.clear();
        for e in &batch {
            let person = e.person_id;
            if e.event.event_type == EventType::Identify
                && let Ok(Value::Object(raw)) = serde_json::from_str::<Value>(&e.event.raw)
                && let Some(Value::Object(t)) = raw.get("traits")
            {
                let known = traits.entry(person).or_default();
                known.extend(t.clone());
                // What the sign-up does not say but messages need: the user's locale, phone
                // and push token (a real app would learn them from its SDKs).
                if !known.contains_key("locale")
                    && let Some(contact) = e.event.user_id.as_deref().and_then(|u| lock(&sim).contact(u))
                {
                    known.insert("locale".into(), contact.locale.into());
                    known.insert("phone".into(), contact.phone.into());
                    known.insert("push_token".into(), contact.push_token.into());
                }
            }
            transitions.clear();
            tracker.step(profiles.get_or_default(person), e, &mut transitions);
            for tr in &transitions {
                stage_triggers(&engine, tr.from, tr.to, &mut fired);
                triggered.extend(fired.drain(..).map(|i| (person, i)));
            }
            let name = e.event.name.as_deref().unwrap_or("");
            let props = if e.event.event_type == EventType::Track {
                serde_json::from_str::<Value>(&e.event.raw).ok().and_then(|v| v.get("properties").cloned())
            } else {
                None
            };
            engine.observe(
                person,
                name,
                e.event.timestamp.0,
                props.as_ref().and_then(Value::as_object),
                &mut outcomes,
            );
            engine.triggered_by_event(name, props.as_ref().and_then(Value::as_object), &mut fired);
            triggered.extend(fired.drain(..).map(|i| (person, i)));
        }
        if t - last_sweep >= SWEEP_MS {
            last_sweep = t;
            let persons: Vec<i64> = profiles.iter().map(|(p, _)| p).collect();
            for person in persons {
                let profile = profiles.get_mut(&person).expect("listed");
                if let Some(tr) = tracker.evaluate(person, profile, t) {
                    stage_triggers(&engine, tr.from, tr.to, &mut fired);
                    triggered.extend(fired.drain(..).map(|i| (person, i)));
                }
            }
        }
        // Segment entries (and churn thresholds, though the simulation has no churn model) of
        // the users active in this step; scheduled campaigns for everyone with a profile.
        if engine.has_state_triggers() {
            let mut active: Vec<i64> = batch.iter().map(|e| e.person_id).collect();
            active.sort_unstable();
            active.dedup();
            let empty = Map::new();
            for person in active {
                let Some(profile) = profiles.get(&person) else { continue };
                let features = profile.features(t);
                let user = UserContext {
                    person,
                    known: true,
                    traits: traits.get(&person).unwrap_or(&empty),
                    features: Some(&features),
                    engagement: Some(Engagement::of(&features).score),
                    stage: Some(profile.stage()),
                    churn: None,
                    zone: profile.zone().and_then(|z| tracker.dict.zone(z)),
                    request: None,
                };
                engine.triggered_by_state(&user, &mut fired);
                triggered.extend(fired.drain(..).map(|i| (person, i)));
            }
        }
        engine.due_schedules(t, &mut fired);
        for i in fired.drain(..) {
            triggered.extend(profiles.iter().map(|(p, _)| (p, i)));
        }
        // One decision round per user per step, every campaign that wants them at once.
        triggered.sort_unstable();
        triggered.dedup();
        let mut i = 0;
        while i < triggered.len() {
            let person = triggered[i].0;
            let mut wanted = Vec::new();
            while i < triggered.len() && triggered[i].0 == person {
                wanted.push(triggered[i].1);
                i += 1;
            }
            let Some(profile) = profiles.get(&person) else { continue };
            let empty = Map::new();
            let user_traits = traits.get(&person).unwrap_or(&empty);
            let features = profile.features(t);
            let engagement = Engagement::of(&features).score;
            let user = UserContext {
                person,
                known: true,
                traits: user_traits,
                features: Some(&features),
                engagement: Some(engagement),
                stage: Some(profile.stage()),
                churn: None,
                zone: profile.zone().and_then(|z| tracker.dict.zone(z)),
                request: None,
            };
            let user_id = user_id_of(person as u32);
            let decided = decide_round(&mut engine, &wanted, &user, &user_id, t, &mut next_id, &mut rng);
            // What a message may say about the user, built once for all of this round's sends.
            let mut user_data = None;
            for d in decided {
                if keep_records {
                    report.records.push(whisperer_decide::record::to_record(&d));
                }
                report.decisions += 1;
                *report.by_status.entry(d.status.as_str()).or_default() += 1;
                if let Some(rule) = &d.explanation.rule
                    && d.status == DecisionStatus::Suppressed
                {
                    *report.suppressed_by_rule.entry(rule.clone()).or_default() += 1;
                }
                if matches!(d.status, DecisionStatus::NotEligible | DecisionStatus::Paused) {
                    continue;
                }
                groups.insert(d.id.clone(), d.holdout);
                let c_index = ids.iter().position(|c| *c == d.campaign).expect("known campaign");
                if d.status != DecisionStatus::Send {
                    continue;
                }
                let campaign = engine.campaign(&d.campaign).expect("known").clone();
                let arm = d.arm.expect("sent decisions have an arm");
                let deliver_at = d.deliver_at.expect("sent decisions have a time");
                let candidates: Vec<Intervention> = campaign
                    .arms
                    .iter()
                    .map(|a| Intervention {
                        channel: a.channel.unwrap_or(Channel::Email),
                        angle: a.content.map_or(Angle::CheckIn, |c| angle_of(&campaign, c).expect("checked")),
                        at: Millis(deliver_at),
                    })
                    .collect();
                let horizon = (campaign.goal_window_ms / 86_400_000).max(1) as u32;
                let uplifts: Vec<f64> = {
                    let sim = lock(&sim);
                    candidates
                        .iter()
                        .map(|iv| sim.expected_uplift(&user_id, iv, horizon).map_or(0.0, |u| u.uplift))
                        .collect()
                };
                let best = uplifts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let best_arm = uplifts.iter().position(|u| *u == best).unwrap_or(0);
                let mean = uplifts.iter().sum::<f64>() / uplifts.len() as f64;
                scored.push(Scored { at: t, regret_policy: best - uplifts[arm], regret_random: best - mean });
                let s = &mut arm_stats[c_index];
                s[arm].0 += 1;
                s[best_arm].1 += 1;
                for (a, u) in uplifts.iter().enumerate() {
                    s[a].2 += u;
                    s[a].3 += 1;
                }
                let user_data = user_data.get_or_insert_with(|| UserData {
                    user_id: Some(user_id.clone()),
                    traits: user_traits.clone(),
                    features: whisperer_decide::context::FEATURE_NAMES
                        .iter()
                        .filter_map(|&name| {
                            whisperer_decide::context::feature(&features, name).flatten().map(|v| (name, v))
                        })
                        .collect(),
                    // The loop runs no churn model (the engine gets no churn score either).
                    scores: Some(whisperer_templates::Scores {
                        engagement,
                        churn: 0.0,
                        stage: profile.stage().as_str().into(),
                    }),
                    time_zone: user_traits.get("timezone").and_then(Value::as_str).map(str::to_owned),
                    context_locale: None,
                });
                let sent = delivery.send(&d, &campaign, arm, person, user_data, &mut report.delivery).await;
                let mut log = MessageLog {
                    decision: d.id.clone(),
                    person,
                    channel: candidates[arm].channel,
                    result: sent.result,
                    opened: false,
                    clicked: false,
                    unsubscribed: false,
                };
                // The provider's status callbacks, as events of the user.
                for ev in &sent.callbacks {
                    let mut props = json!({
                        "decision_id": d.id,
                        "channel": log.channel.as_str(),
                        "message_id": ev.message_id,
                    });
                    match ev.status {
                        Status::Opened => (report.opened, log.opened) = (report.opened + 1, true),
                        Status::Clicked => (report.clicked, log.clicked) = (report.clicked + 1, true),
                        Status::Unsubscribed => {
                            (report.unsubscribed, log.unsubscribed) = (report.unsubscribed + 1, true)
                        }
                        Status::Bounced => {
                            props["type"] = json!("hard");
                            props
                                .as_object_mut()
                                .expect("an object")
                                .extend(ev.detail.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))));
                        }
                        _ => {}
                    }
                    engine.observe(person, ev.status.event_name(), ev.at, props.as_object(), &mut outcomes);
                }
                if keep_records {
                    report.messages.push(log);
                }
            }
        }
        engine.expire(t, &mut outcomes);
        if keep_records {
            report.outcomes.extend(outcomes.iter().map(whisperer_decide::record::to_update));
        }
        settle(&mut outcomes, &mut groups, &mut report);
        if t - last_refresh >= REFRESH_MS {
            last_refresh = t;
            engine.refresh();
        }
        if (t - start) % 86_400_000 == 0 {
            progress(((t - start) / 86_400_000) as u32);
        }
    }
    report.delivery.simulated_deliveries = lock(&sim).stats().interventions;
    for (c, stats) in arm_stats.iter().enumerate() {
        let campaign = engine.campaign(&ids[c]).expect("known");
        for (a, (chosen, best, uplift_sum, n)) in stats.iter().enumerate() {
            report.arms.push(ArmReport {
                campaign: ids[c].clone(),
                arm: campaign.arms[a].name.clone(),
                chosen: *chosen,
                oracle_best: *best,
                mean_oracle_uplift: if *n > 0 { uplift_sum / *n as f64 } else { 0.0 },
            });
        }
    }
    report.scored_decisions = scored.len() as u64;
    report.regret_policy = scored.iter().map(|s| s.regret_policy).sum();
    report.regret_random = scored.iter().map(|s| s.regret_random).sum();
    let span = (end - start).max(1);
    report.regret_by_quarter = (0..4).map(|_| QuarterRegret::default()).collect();
    for s in &scored {
        let q = (((s.at - start) * 4 / span) as usize).min(3);
        let r = &mut report.regret_by_quarter[q];
        r.decisions += 1;
        r.policy += s.regret_policy;
        r.random += s.regret_random;
    }
    for r in &mut report.regret_by_quarter {
        if r.decisions > 0 {
            r.policy /= r.decisions as f64;
            r.random /= r.decisions as f64;
        }
    }
    let rate =
        |g: &mut Group| g.rate = if g.decisions > 0 { g.converted as f64 / g.decisions as f64 } else { 0.0 };
    rate(&mut report.treated);
    rate(&mut report.holdout);
    let (t_, h) = (&report.treated, &report.holdout);
    // Wald interval of the difference (unpooled), as statsmodels' confint_proportions_2indep.
    if let Ok(test) =
        whisperer_stats::two_proportion_test(t_.converted, t_.decisions, h.converted, h.decisions, 0.95)
    {
        report.uplift = Some(test.diff);
        report.uplift_ci_low = Some(test.diff_ci.lower);
        report.uplift_ci_high = Some(test.diff_ci.upper);
    }
    Ok(report)
}

/// The simulated workspace's delivery: its templates, compliance rules and tracking key, the
/// composer that renders messages, and a router whose providers deliver into the simulation.
struct Delivery {
    ws: WorkspaceId,
    templates: Templates,
    rules: ComplianceRules,
    tracking_key: TrackingKey,
    composer: Composer,
    router: Router,
    /// Status callbacks of the simulator's providers, read after each send.
    callbacks: Arc<Mutex<Vec<StatusEvent>>>,
    /// The composer asks a store for what `compose` needs; rendering (all the loop uses) does
    /// not, so an empty scratch store stands in for the workspace's.
    _scratch: tempfile::TempDir,
}

/// What became of one message: `sent` or why not, and what the provider reported back.
struct Sent {
    result: String,
    callbacks: Vec<StatusEvent>,
}

impl Delivery {
    fn new(
        ws: &WorkspaceId,
        seed: u64,
        sim: Arc<Mutex<Simulation>>,
        angles: HashMap<(String, String), Angle>,
        templates: Templates,
    ) -> anyhow::Result<Delivery> {
        let scratch = tempfile::Builder::new()
            .prefix("whisperer-loop-")
            .tempdir()
            .context("cannot make a scratch dir")?;
        let store = whisperer_store_sqlite::SqliteStore::open(scratch.path())?;
        let composer = Composer::new(Arc::new(store), None, None);
        let rules = ComplianceRules::new(RulesConfig {
            postal_address: Some(POSTAL_ADDRESS.into()),
            ..Default::default()
        })?;
        let callbacks = Arc::new(Mutex::new(Vec::new()));
        let angles = Arc::new(angles);
        let routes = SIMULATED_CHANNELS
            .into_iter()
            .map(|channel| {
                let provider = SimulatorProvider {
                    name: format!("simulator-{channel}"),
                    channel,
                    sim: sim.clone(),
                    angles: angles.clone(),
                    callbacks: callbacks.clone(),
                };
                let slot = Slot::new(Arc::new(provider), BreakerConfig::default(), None);
                (channel, Route::new(vec![slot], None))
            })
            .collect();
        Ok(Delivery {
            ws: ws.clone(),
            templates,
            rules,
            // A fixed key: links differ by message, not by run.
            tracking_key: TrackingKey::new(format!("whisperer-simulation-{seed}").as_bytes()),
            composer,
            router: Router::new(routes),
            callbacks,
            _scratch: scratch,
        })
    }

    /// Renders a sent decision's message for the user, passes it through the gate and routes
    /// it; counts each step in `report`.
    async fn send(
        &self,
        d: &whisperer_decide::Decision,
        campaign: &Campaign,
        arm: usize,
        person: i64,
        user: &UserData,
        report: &mut DeliveryReport,
    ) -> Sent {
        report.messages += 1;
        let failed = |result: &str| Sent { result: result.to_owned(), callbacks: Vec::new() };
        let arm = &campaign.arms[arm];
        let channel = arm.channel.unwrap_or(Channel::Email);
        let Some(content) = arm.content.map(|c| &campaign.spec.actions.contents[c]) else {
            *report.not_rendered.entry("no_content".into()).or_default() += 1;
            return failed("no_content");
        };
        let Some(template) = content.template.as_ref().and_then(|t| self.templates.get(t)) else {
            *report.not_rendered.entry("no_template".into()).or_default() += 1;
            return failed("no_template");
        };
        let deliver_at = d.deliver_at.unwrap_or(d.at);
        let message_id = format!("msg-{}", d.id);
        let address =
            whisperer_deliver::compose::MessageAddress { id: &message_id, person, decision_id: Some(&d.id) };
        let vars = whisperer_templates::Decision {
            id: d.id.clone(),
            campaign: d.campaign.clone(),
            arm: arm.name.clone(),
            channel: Some(channel.as_str().into()),
            content: Some(whisperer_templates::Value::from(content.id.as_str())),
        };
        // Contents with a brief are sent with their template, in the locales it has: the
        // simulation has no LLM.
        let workspace = whisperer_deliver::WorkspaceContent {
            tracking: Some((TRACKING_BASE_URL, &self.tracking_key)),
            ..whisperer_deliver::WorkspaceContent::new(&self.rules)
        };
        let rendered = self.composer.render(
            &self.ws,
            &workspace,
            address,
            channel,
            template,
            user,
            vars,
            Some(&d.campaign),
        );
        let mut message = match rendered {
            Ok((message, violations)) => {
                report.rendered += 1;
                // The gate, as the composer applies it to every job: any violation stops the
                // message.
                if !violations.is_empty() {
                    report.blocked += 1;
                    let mut rules: Vec<&str> = violations.iter().map(|v| v.rule).collect();
                    rules.sort_unstable();
                    rules.dedup();
                    for rule in rules {
                        *report.blocked_by_rule.entry(rule.to_owned()).or_default() += 1;
                    }
                    return failed("compliance");
                }
                message
            }
            Err(e) => {
                *report.not_rendered.entry(e.code.to_owned()).or_default() += 1;
                return failed(e.code);
            }
        };
        // What the simulated reader needs besides the text: which content it is (the angle
        // stands in for reading it) and when it is due (a scheduled send, as SendGrid's
        // `send_at`): the decision may be for the user's usual hour, later today.
        message.data.insert("content".into(), content.id.clone());
        message.data.insert("send_at".into(), deliver_at.to_string());
        let locale = message.data.get("locale").cloned().unwrap_or_default();
        match self.router.send(&message).await {
            Routed::Sent { provider, .. } => {
                report.sent += 1;
                report.by_provider.entry(provider).or_default().sent += 1;
                *report.by_locale.entry(locale).or_default() += 1;
                let callbacks = std::mem::take(&mut *lock(&self.callbacks));
                Sent { result: "sent".into(), callbacks }
            }
            Routed::Undeliverable { error, tries } => {
                report.failed += 1;
                *report.failed_by_code.entry(error.code.clone()).or_default() += 1;
                let provider = tries.last().map(|t| t.provider.clone()).unwrap_or_default();
                report.by_provider.entry(provider).or_default().failed += 1;
                // The bounce a real sender writes to the log, so the engine stops using the
                // channel for this user.
                let bounce = StatusEvent {
                    message_id: Some(message.id.clone()),
                    provider_message_id: None,
                    status: Status::Bounced,
                    at: deliver_at,
                    detail: [("code".to_owned(), error.code.clone()), ("reason".to_owned(), error.message)]
                        .into(),
                };
                Sent { result: error.code, callbacks: vec![bounce] }
            }
            // Simulated providers neither throttle nor go down; a configuration that makes them
            // would be a bug, counted rather than retried.
            Routed::Retry { .. } => {
                report.failed += 1;
                *report.failed_by_code.entry("retry".into()).or_default() += 1;
                failed("retry")
            }
            Routed::Refused { .. } => {
                report.failed += 1;
                *report.failed_by_code.entry("refused".into()).or_default() += 1;
                failed("refused")
            }
        }
    }
}

/// A delivery provider whose recipients are the simulated users: `send` finds the user the
/// address belongs to and applies the message (its channel, its content's angle, its send
/// time) to them, changing their hidden state. What the user does with it is reported like a
/// provider's status callbacks: delivered, opened, clicked, unsubscribed.
pub struct SimulatorProvider {
    name: String,
    channel: Channel,
    sim: Arc<Mutex<Simulation>>,
    /// (campaign, content) → what the message is about, as the simulator understands it.
    angles: Arc<HashMap<(String, String), Angle>>,
    callbacks: Arc<Mutex<Vec<StatusEvent>>>,
}

#[async_trait::async_trait]
impl Provider for SimulatorProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let field = |k: &str| message.data.get(k).map(String::as_str).unwrap_or_default();
        let angle = self
            .angles
            .get(&(field("campaign").to_owned(), field("content").to_owned()))
            .ok_or_else(|| {
                SendError::new(
                    FailureKind::Provider,
                    "unknown_content",
                    format!("campaign {:?} has no content {:?}", field("campaign"), field("content")),
                )
            })?;
        let mut sim = lock(&self.sim);
        let at = field("send_at").parse().map_or(sim.now(), Millis);
        let address = match &message.recipient {
            Recipient::Email { address, .. } => Some(address.as_str()),
            Recipient::Phone { number } => Some(number.as_str()),
            Recipient::PushToken { token } => Some(token.as_str()),
            Recipient::Person => message.user_id.as_deref(),
            Recipient::WebPush { .. } => None,
        };
        let gone = |code: &str, why: String| SendError::new(FailureKind::Recipient, code, why);
        let user_id = address.and_then(|a| sim.user_of_address(self.channel, a)).ok_or_else(|| {
            gone("unknown_address", format!("no simulated user has this {} address", self.channel))
        })?;
        let outcome =
            sim.apply_intervention(&user_id, Intervention { channel: self.channel, angle: *angle, at });
        match outcome.status {
            DeliveryStatus::Delivered => {}
            DeliveryStatus::Unsubscribed => {
                return Err(gone("unsubscribed", format!("the user unsubscribed from {}", self.channel)));
            }
            // In-app messages are addressed by person, and campaigns may pick anonymous
            // visitors: the inbox keeps the message, but a visitor never opens the app, so it is
            // never delivered (no callback).
            DeliveryStatus::NotSignedUp if self.channel == Channel::InApp => {
                return Ok(Receipt { provider_message_id: Some(message.id.clone()) });
            }
            DeliveryStatus::NotSignedUp | DeliveryStatus::UnknownUser => {
                return Err(gone("no_account", "the user has no account".into()));
            }
        }
        let at = outcome.delivered_at.0;
        let event = |status| StatusEvent {
            message_id: Some(message.id.clone()),
            provider_message_id: Some(message.id.clone()),
            status,
            at,
            detail: BTreeMap::new(),
        };
        let mut callbacks = lock(&self.callbacks);
        callbacks.push(event(Status::Delivered));
        if outcome.opened {
            callbacks.push(event(Status::Opened));
        }
        if outcome.clicked {
            callbacks.push(event(Status::Clicked));
        }
        if outcome.unsubscribed {
            callbacks.push(event(Status::Unsubscribed));
        }
        Ok(Receipt { provider_message_id: Some(message.id.clone()) })
    }
}

/// A panic while the simulation or the callbacks are held ends the run anyway; a poisoned lock
/// is taken over rather than panicking again.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Campaigns a stage change triggers.
fn stage_triggers(
    engine: &Engine,
    from: whisperer_profiles::Stage,
    to: whisperer_profiles::Stage,
    out: &mut Vec<usize>,
) {
    let props = json!({ "from": from.as_str(), "to": to.as_str() });
    engine.triggered_by_event(whisperer_profiles::observation::LIFECYCLE_EVENT, props.as_object(), out);
}

fn decide_round(
    engine: &mut Engine,
    wanted: &[usize],
    user: &UserContext<'_>,
    user_id: &str,
    now: i64,
    next_id: &mut u64,
    rng: &mut impl FnMut() -> f64,
) -> Vec<whisperer_decide::Decision> {
    let ids: Vec<String> = wanted
        .iter()
        .map(|_| {
            *next_id += 1;
            format!("sim-{next_id:08}")
        })
        .collect();
    let draws: Vec<f64> = wanted.iter().map(|_| rng()).collect();
    // `decide_many` asks for one draw per campaign, in priority order; hand them out in turn.
    let mut k = 0;
    engine.decide_many(wanted, user, Some(user_id), &mut |_| {
        k += 1;
        Draw { decision_id: &ids[k - 1], unit: user_id, u: draws[k - 1], now }
    })
}

/// Counts settled outcomes into the treated and holdout groups.
fn settle(
    outcomes: &mut Vec<whisperer_decide::Outcome>,
    groups: &mut HashMap<String, bool>,
    report: &mut LoopReport,
) {
    for o in outcomes.drain(..) {
        let converted = match o.kind {
            OutcomeKind::Converted => true,
            OutcomeKind::Failed => false,
            _ => continue,
        };
        // A decision is settled once: by its first conversion or its window's close (a late
        // conversion after the close is not counted again here).
        let Some(holdout) = groups.remove(&o.decision) else { continue };
        let g = if holdout { &mut report.holdout } else { &mut report.treated };
        g.decisions += 1;
        g.converted += u64::from(converted);
    }
}

/// A few lines for people: uplift with its interval, regret against the oracle and random.
pub fn summary(r: &LoopReport, elapsed: std::time::Duration) -> String {
    let mut out = format!(
        "closed loop: {} users, {} days, {} events, {} decisions in {:.1} s\n",
        r.users,
        r.days,
        r.events,
        r.decisions,
        elapsed.as_secs_f64()
    );
    let mut statuses: Vec<_> = r.by_status.iter().collect();
    statuses.sort();
    out += &format!(
        "  decisions: {}\n",
        statuses.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
    );
    if !r.suppressed_by_rule.is_empty() {
        let mut rules: Vec<_> = r.suppressed_by_rule.iter().collect();
        rules.sort();
        out += &format!(
            "  suppressed by: {}\n",
            rules.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
        );
    }
    out += &format!(
        "  goal reached: treated {:.1} % of {}, holdout {:.1} % of {}",
        100.0 * r.treated.rate,
        r.treated.decisions,
        100.0 * r.holdout.rate,
        r.holdout.decisions,
    );
    out += &match (r.uplift, r.uplift_ci_low, r.uplift_ci_high) {
        (Some(u), Some(lo), Some(hi)) => {
            format!(" -> uplift {:+.1} pts (95 % CI {:+.1} .. {:+.1})\n", 100.0 * u, 100.0 * lo, 100.0 * hi)
        }
        _ => " -> no holdout to measure uplift against\n".to_owned(),
    };
    let change = if r.regret_random > 0.0 { 100.0 * (r.regret_policy / r.regret_random - 1.0) } else { 0.0 };
    out += &format!(
        "  regret vs the oracle arm over {} sent decisions: policy {:.2}, uniform random {:.2} ({:.0} % {} than random)\n",
        r.scored_decisions,
        r.regret_policy,
        r.regret_random,
        change.abs(),
        if change <= 0.0 { "less" } else { "more" }
    );
    out += "  regret per decision by quarter (policy / random):";
    for q in &r.regret_by_quarter {
        out += &format!(" {:.4}/{:.4}", q.policy, q.random);
    }
    out += "\n  arms (chosen / oracle best):";
    for a in &r.arms {
        out += &format!(" {}:{} {}/{}", a.campaign, a.arm, a.chosen, a.oracle_best);
    }
    out += "\n";
    out += &delivery_summary(&r.delivery);
    out
}

/// The delivery lines of the summary: how many messages got through each step, and why not.
pub fn delivery_summary(d: &DeliveryReport) -> String {
    let counts = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            String::new()
        } else {
            format!(" ({})", m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "))
        }
    };
    let not_rendered: u64 = d.not_rendered.values().sum();
    let mut out = format!(
        "  delivery: {} messages; {} rendered, {} not rendered{}; {} blocked by the gate{}\n",
        d.messages,
        d.rendered,
        not_rendered,
        counts(&d.not_rendered),
        d.blocked,
        counts(&d.blocked_by_rule),
    );
    out += &format!(
        "  sent {}, failed {}{}; by provider (sent/failed):{}\n",
        d.sent,
        d.failed,
        counts(&d.failed_by_code),
        d.by_provider.iter().map(|(p, c)| format!(" {p} {}/{}", c.sent, c.failed)).collect::<String>(),
    );
    out += &format!(
        "  sent by template locale: {}; reached simulated users: {}",
        d.by_locale.iter().map(|(l, n)| format!("{l} {n}")).collect::<Vec<_>>().join(", "),
        d.simulated_deliveries
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-01T00:00:00Z: fixed so runs do not depend on the day.
    const END: Millis = Millis(1_717_200_000_000);

    fn config(users: u32, days: u32, seed: u64) -> SimConfig {
        SimConfig { users, seed, ..SimConfig::ending_at(END, days) }
    }

    fn campaign(text: &str) -> Campaign {
        CampaignSpec::parse(text).unwrap().compile(1).unwrap()
    }

    fn examples() -> Vec<Campaign> {
        vec![
            campaign(include_str!("../../../examples/campaigns/win-back.toml")),
            campaign(include_str!("../../../examples/campaigns/onboarding.toml")),
        ]
    }

    /// The example templates with every body and html replaced by `f(body)`.
    fn edited(f: impl Fn(&str) -> String) -> Templates {
        example_templates()
            .unwrap()
            .iter()
            .map(|(id, t)| {
                let mut d = t.definition.clone();
                for parts in d.locales.values_mut() {
                    parts.body = f(&parts.body);
                    parts.html = parts.html.as_deref().map(&f);
                }
                (id.clone(), Arc::new(d.compile().unwrap()))
            })
            .collect()
    }

    #[tokio::test]
    async fn sent_decisions_are_rendered_gated_and_delivered_into_the_simulation() {
        let r =
            run(config(600, 60, 5), examples(), example_templates().unwrap(), true, |_| {}).await.unwrap();
        let d = &r.delivery;
        assert_eq!(d.messages, r.by_status["send"], "one message per sent decision");
        assert_eq!(d.rendered + d.not_rendered.values().sum::<u64>(), d.messages);
        assert_eq!(d.rendered, d.blocked + d.sent + d.failed);
        assert_eq!(d.blocked, 0, "the example templates pass the gate: {d:?}");
        assert!(d.sent > 300, "{d:?}");
        // Every channel of the example campaigns went through its simulator provider.
        for p in ["simulator-email", "simulator-push", "simulator-in_app"] {
            assert!(d.by_provider.get(p).is_some_and(|c| c.sent > 10), "{p}: {d:?}");
        }
        // Users in Germany and Austria read German.
        assert!(d.by_locale.get("de").is_some_and(|n| *n > 5) && d.by_locale["en"] > 100, "{d:?}");
        // The simulator counts what reached its users: only messages a provider accepted.
        assert!(d.simulated_deliveries > 0 && d.simulated_deliveries <= d.sent, "{d:?}");
        assert!(r.opened > 0 && r.opened <= d.sent, "{} opened", r.opened);
        let sent: Vec<&MessageLog> = r.messages.iter().filter(|m| m.result == "sent").collect();
        assert_eq!(sent.len() as u64, d.sent);
        assert_eq!(r.messages.iter().filter(|m| m.opened).count() as u64, r.opened);
        assert!(r.messages.iter().all(|m| m.result == "sent" || !m.opened), "only sent messages are opened");
    }

    #[tokio::test]
    async fn a_missing_variable_or_a_gate_violation_means_the_user_gets_nothing() {
        // A variable no simulated user has: every render fails, nothing reaches anyone.
        let missing = edited(|body| format!("{{{{ traits.nickname }}}}, {body}"));
        let r = run(config(400, 45, 3), examples(), missing, true, |_| {}).await.unwrap();
        let d = &r.delivery;
        assert!(d.messages > 100, "{d:?}");
        assert_eq!(
            d.not_rendered.get("render_error").copied().unwrap_or(0)
                + d.not_rendered.get("no_recipient").copied().unwrap_or(0),
            d.messages,
            "{d:?}"
        );
        assert!(d.not_rendered["render_error"] > 100, "{d:?}");
        assert_eq!((d.rendered, d.sent, d.simulated_deliveries), (0, 0, 0), "{d:?}");
        assert_eq!((r.opened, r.clicked, r.unsubscribed), (0, 0, 0));

        // No postal address: marketing email is blocked by the gate; push and in-app (which
        // need none) still go out.
        let no_address = edited(|body| body.replace(POSTAL_ADDRESS, ""));
        let r = run(config(400, 45, 3), examples(), no_address, true, |_| {}).await.unwrap();
        let d = &r.delivery;
        let email: Vec<&MessageLog> =
            r.messages.iter().filter(|m| m.channel == Channel::Email && m.result != "no_recipient").collect();
        assert!(email.len() > 50, "{d:?}");
        assert!(email.iter().all(|m| m.result == "compliance"), "every email is blocked");
        assert_eq!(d.blocked, email.len() as u64);
        assert_eq!(d.blocked_by_rule.get("missing_postal_address"), Some(&d.blocked), "{d:?}");
        assert!(!d.by_provider.contains_key("simulator-email"), "no email reached a provider: {d:?}");
        assert!(d.sent > 50 && d.simulated_deliveries <= d.sent, "{d:?}");
        assert!(r.messages.iter().filter(|m| m.channel == Channel::Email).all(|m| !m.opened));
    }

    #[tokio::test]
    async fn an_unsubscribe_suppresses_that_channel_for_later_decisions() {
        // A pushy campaign (a discount on every sign-in, little cooldown) makes users unsubscribe.
        let pushy = campaign(
            r#"
            id = "pushy"
            name = "Discount on every visit"
            holdout_percent = 0
            cooldown = "1h"
            trigger = { type = "event", event = "Session Started" }
            [goal]
            event = "Plan Upgraded"
            within = "3d"
            [actions]
            channels = ["email", "push"]
            [[actions.contents]]
            id = "discount"
            template = "win-back-discount"
            angle = "discount"
            [policy]
            kind = "ab"
            "#,
        );
        let r =
            run(config(400, 45, 11), vec![pushy], example_templates().unwrap(), true, |_| {}).await.unwrap();
        let unsubscribed: Vec<&MessageLog> = r.messages.iter().filter(|m| m.unsubscribed).collect();
        assert!(unsubscribed.len() >= 3, "{} unsubscribes: {:?}", unsubscribed.len(), r.delivery);
        let mut suppressed_later = 0;
        for u in &unsubscribed {
            assert!(
                !r.messages
                    .iter()
                    .any(|m| m.person == u.person && m.decision > u.decision && m.channel == u.channel),
                "a message on {} after {u:?}",
                u.channel
            );
            // Later decisions that wanted the channel were suppressed for the unsubscribe.
            let prefix = format!("{}/", u.channel.as_str());
            for d in r.records.iter().filter(|d| d.person == u.person && d.id > u.decision) {
                if d.arm.as_deref().is_some_and(|a| a.starts_with(&prefix)) {
                    let body: Value = serde_json::from_str(&d.body).unwrap();
                    assert_eq!(d.status, "suppressed", "{d:?}");
                    assert_eq!(body["explanation"]["rule"], "unsubscribed", "{body}");
                    suppressed_later += 1;
                }
            }
        }
        assert!(suppressed_later > 5, "{suppressed_later} later decisions wanted the channel");
        // The engine knew before any provider had to refuse: no message bounced as unsubscribed.
        assert_eq!(r.delivery.failed_by_code.get("unsubscribed"), None, "{:?}", r.delivery);
        assert!(
            r.suppressed_by_rule.get("unsubscribed").is_some_and(|n| *n > 0),
            "{:?}",
            r.suppressed_by_rule
        );
    }

    #[tokio::test]
    async fn same_seed_same_report() {
        let report = |seed| async move {
            let r = run(config(300, 40, seed), examples(), example_templates().unwrap(), true, |_| {})
                .await
                .unwrap();
            (serde_json::to_string(&r).unwrap(), r.messages)
        };
        let (a, a_messages) = report(2).await;
        let (b, b_messages) = report(2).await;
        assert_eq!(a, b);
        assert_eq!(a_messages, b_messages);
        assert!(a.contains("\"simulated_deliveries\""), "{a}");
        let (c, _) = report(3).await;
        assert_ne!(a, c);
    }

    #[tokio::test]
    async fn the_simulator_provider_delivers_to_addresses_and_refuses_unknown_or_unsubscribed_ones() {
        let sim = Arc::new(Mutex::new(Simulation::new(config(50, 20, 4)).unwrap()));
        lock(&sim).run_to_end(|_| {});
        let user = lock(&sim).signed_up_user_ids()[0].clone();
        let contact = lock(&sim).contact(&user).unwrap();
        let callbacks = Arc::new(Mutex::new(Vec::new()));
        let provider = SimulatorProvider {
            name: "simulator-email".into(),
            channel: Channel::Email,
            sim: sim.clone(),
            angles: Arc::new(HashMap::from([(("c".to_owned(), "tip".to_owned()), Angle::FeatureTip)])),
            callbacks: callbacks.clone(),
        };
        let message = |address: &str| Outgoing {
            id: "m1".into(),
            workspace: "ws".into(),
            person: "1".into(),
            user_id: Some(user.clone()),
            channel: Channel::Email,
            kind: whisperer_channels::MessageKind::Marketing,
            recipient: Recipient::Email { address: address.into(), name: None },
            subject: Some("s".into()),
            text: "t".into(),
            html: None,
            headers: Vec::new(),
            data: BTreeMap::from([("campaign".into(), "c".into()), ("content".into(), "tip".into())]),
        };
        let before = lock(&sim).hidden_state(&user).unwrap().fatigue;
        provider.send(&message(&contact.email)).await.unwrap();
        assert_eq!(lock(&sim).stats().interventions, 1);
        assert!(lock(&sim).hidden_state(&user).unwrap().fatigue > before, "the user felt it");
        let got = std::mem::take(&mut *lock(&callbacks));
        assert_eq!(got[0].status, Status::Delivered);
        assert!(got.iter().all(|e| e.message_id.as_deref() == Some("m1")));

        let e = provider.send(&message("nobody.7@example.com")).await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (FailureKind::Recipient, "unknown_address"));
        // Until the user unsubscribes, every send reaches them; after, none does.
        let mut sends = 1;
        while !lock(&callbacks).iter().any(|e| e.status == Status::Unsubscribed) {
            lock(&callbacks).clear();
            provider.send(&message(&contact.email)).await.unwrap();
            sends += 1;
            assert!(sends < 500, "a user this pestered unsubscribes");
        }
        let e = provider.send(&message(&contact.email)).await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (FailureKind::Recipient, "unsubscribed"));
        assert_eq!(lock(&sim).stats().interventions, sends);
    }
}
