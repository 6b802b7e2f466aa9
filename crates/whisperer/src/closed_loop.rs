//! `whisperer simulate --campaigns FILE…`: the decision engine run against a simulated
//! population, in process. Events flow from the simulator into live profiles; stage changes and
//! events trigger campaigns; the engine decides (holdout, policy, fatigue); chosen messages are
//! applied to the simulated user directly (until delivery channels exist); goal events teach
//! the policy. The simulator's oracle scores every sent decision against the best arm, so the
//! report says what the policy cost compared with knowing the truth, and with choosing at random.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value, json};
use whisperer_core::{EventType, Millis, WorkspaceId};
use whisperer_decide::{
    Campaign, CampaignSpec, DecisionStatus, Draw, Engine, FatigueRules, OutcomeKind, UserContext,
};
use whisperer_profiles::{Engagement, ProfileTable, Tracker};
use whisperer_sim::{Angle, DeliveryStatus, Intervention, Message, SimConfig, Simulation, user_id_of};
use whisperer_store::{DecisionRecord, OutcomeUpdate};

/// Decisions are taken at the end of each step of simulated time.
const STEP_MS: i64 = 15 * 60_000;
/// Stages that change with time alone are found by a sweep this often.
const SWEEP_MS: i64 = 6 * 3_600_000;
/// Policies take a new snapshot of what they learned this often.
const REFRESH_MS: i64 = 3_600_000;

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
    /// Every decision as the audit trail stores it (when asked for).
    #[serde(skip)]
    pub records: Vec<DecisionRecord>,
    /// What came of them, in the order it happened (stored after the decisions).
    #[serde(skip)]
    pub outcomes: Vec<OutcomeUpdate>,
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

/// Runs the population with the campaigns; `progress` is told the simulated day now and then.
/// With `keep_records`, the report holds every decision as the audit trail would store it.
pub fn run(
    config: SimConfig,
    campaigns: Vec<Campaign>,
    keep_records: bool,
    mut progress: impl FnMut(u32),
) -> anyhow::Result<LoopReport> {
    for c in &campaigns {
        for i in 0..c.spec.actions.contents.len() {
            angle_of(c, i)?;
        }
    }
    let (users, seed) = (config.users, config.seed);
    let days = ((config.end.0 - config.start.0) / 86_400_000) as u32;
    let mut sim = Simulation::new(config).context("invalid simulation options")?;
    let ws = WorkspaceId::generate();
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
        records: Vec::new(),
        outcomes: Vec::new(),
    };
    let mut tracker = Tracker::default();
    let mut profiles = ProfileTable::default();
    let mut traits: HashMap<i64, Map<String, Value>> = HashMap::new();
    // Decision id → (holdout, still counted) for the uplift; outcomes settle each.
    let mut groups: HashMap<String, bool> = HashMap::new();
    let mut scored: Vec<Scored> = Vec::new();
    let (start, end) = (sim.config().start.0, sim.config().end.0);
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
        sim.advance_to(Millis(t), |m: &Message<'_>| {
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
                traits.entry(person).or_default().extend(t.clone());
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
                        channel: a.channel.unwrap_or(whisperer_decide::Channel::Email),
                        angle: a.content.map_or(Angle::CheckIn, |c| angle_of(&campaign, c).expect("checked")),
                        at: Millis(deliver_at),
                    })
                    .collect();
                let horizon = (campaign.goal_window_ms / 86_400_000).max(1) as u32;
                let uplifts: Vec<f64> = candidates
                    .iter()
                    .map(|iv| sim.expected_uplift(&user_id, iv, horizon).map_or(0.0, |u| u.uplift))
                    .collect();
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
                let outcome = sim.apply_intervention(&user_id, candidates[arm]);
                if outcome.status == DeliveryStatus::Delivered {
                    let props = json!({ "decision_id": d.id });
                    let at = outcome.delivered_at.0;
                    engine.observe(person, "Message Delivered", at, props.as_object(), &mut outcomes);
                    if outcome.opened {
                        report.opened += 1;
                        engine.observe(person, "Message Opened", at, props.as_object(), &mut outcomes);
                    }
                    if outcome.clicked {
                        report.clicked += 1;
                        engine.observe(person, "Message Clicked", at, props.as_object(), &mut outcomes);
                    }
                    if outcome.unsubscribed {
                        report.unsubscribed += 1;
                        let props = json!({ "channel": candidates[arm].channel.as_str() });
                        engine.observe(person, "Unsubscribed", at, props.as_object(), &mut outcomes);
                    }
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
    out
}
