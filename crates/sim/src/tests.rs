//! Quality checks of the simulator: determinism, rhythms, churn realism, the oracle's
//! discrimination, interventions, and Segment validity of every message.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, TimeZone, Timelike, Utc};
use whisperer_core::Millis;

use super::*;

/// 2024-06-01T00:00:00Z, a Saturday: fixed so the tests do not depend on the day they run.
const END: Millis = Millis(1_717_200_000_000);

fn config(users: u32, days: i64, seed: u64) -> SimConfig {
    SimConfig { users, seed, start: Millis(END.0 - days * DAY_MS), end: END, ..SimConfig::default() }
}

/// Every message of a run as JSON lines.
fn output(config: SimConfig) -> Vec<u8> {
    let mut sim = Simulation::new(config).unwrap();
    let mut out = Vec::new();
    sim.run_to_end(|m| {
        m.write_json(&mut out);
        out.push(b'\n');
    });
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let a = output(config(300, 40, 7));
    let b = output(config(300, 40, 7));
    assert!(a.len() > 100_000, "{} bytes", a.len());
    assert!(a == b, "same seed and config must give identical output");
    let c = output(config(300, 40, 8));
    assert!(a != c);
}

#[test]
fn stepping_the_clock_does_not_change_the_output() {
    let whole = output(config(300, 40, 3));
    let mut sim = Simulation::new(config(300, 40, 3)).unwrap();
    let mut stepped = Vec::new();
    let mut t = sim.now().0;
    let mut step = 1;
    while t < END.0 {
        // Uneven steps, from a millisecond to days, and oracle queries in between: none of it
        // may shift a random draw.
        t = (t + step).min(END.0);
        step = step * 7 % 400_000_000 + 1;
        sim.advance_to(Millis(t), |m| {
            m.write_json(&mut stepped);
            stepped.push(b'\n');
        });
        if step % 5 == 0 {
            let _ = sim.oracle_churn_hazards(sim.now(), 7);
            let iv = Intervention { channel: Channel::Email, angle: Angle::CheckIn, at: sim.now() };
            let _ = sim.expected_uplift("user-000005", &iv, 7);
        }
    }
    assert!(whole == stepped);
}

#[test]
fn every_message_is_a_valid_segment_message() {
    use whisperer_ingest::{Endpoint, Limits, decode::decode};
    let text = String::from_utf8(output(config(150, 30, 11))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut ids = HashSet::new();
    let mut last_ts = i64::MIN;
    let mut identified = HashSet::new();
    let mut linked = HashSet::new();
    for chunk in lines.chunks(100) {
        let body = format!("{{\"batch\":[{}]}}", chunk.join(","));
        let decoded = decode(Endpoint::Batch, body.as_bytes(), &Limits::default()).expect("batch decodes");
        for (line, draft) in chunk.iter().zip(decoded.messages) {
            let draft = draft.unwrap_or_else(|e| panic!("{e}: {line}"));
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(ids.insert(draft.message_id.clone().expect("messageId")), "duplicate id in {line}");
            let ts = draft.timestamp.expect("timestamp").0;
            assert!(ts >= last_ts, "out of order: {line}");
            last_ts = ts;
            assert!(draft.sent_at.is_none(), "sentAt would make the server shift historical timestamps");
            assert!(draft.user_agent.as_deref().is_some_and(|ua| ua.starts_with("Mozilla/5.0")));
            let tz = v["context"]["timezone"].as_str().unwrap();
            assert!(tz.parse::<chrono_tz::Tz>().is_ok(), "{tz}");
            assert!(draft.anonymous_id.is_some());
            match v["type"].as_str().unwrap() {
                "identify" => {
                    assert!(draft.user_id.is_some());
                    if identified.insert(draft.user_id.clone()) {
                        for key in ["email", "name", "plan", "country", "timezone", "company_size"] {
                            assert!(v["traits"][key].is_string(), "{key} in {line}");
                        }
                        assert!(v["traits"]["acquisition_channel"].is_string());
                    }
                }
                "page" => assert!(v["name"].is_string()),
                "track" => {
                    assert!(draft.user_id.is_some(), "track events come after sign-up: {line}");
                    match v["event"].as_str().unwrap() {
                        "Feature Used" => assert!(v["properties"]["feature"].is_string()),
                        "Plan Upgraded" => {
                            assert!(v["properties"]["revenue"].is_f64());
                            assert!(v["properties"]["plan"].is_string());
                        }
                        name => assert!(EVENT_NAMES.contains(&name), "{name}"),
                    }
                }
                other => panic!("unexpected type {other}"),
            }
            // Before sign-up a visitor is anonymous; afterwards every message carries the user id.
            let anonymous_id = draft.anonymous_id.clone().unwrap();
            if draft.user_id.is_some() {
                linked.insert(anonymous_id);
            } else {
                assert!(!linked.contains(&anonymous_id), "anonymous after sign-up: {line}");
            }
        }
    }
    assert!(identified.len() > 100);
}

#[test]
fn anonymous_browsing_comes_before_the_identify_that_links_it() {
    let mut sim = Simulation::new(config(200, 30, 5)).unwrap();
    let mut first_seen: HashMap<String, (Option<String>, &'static str)> = HashMap::new();
    let mut identify_links = 0;
    sim.run_to_end(|m| {
        let anon = m.anonymous_id();
        let kind = m.kind().as_str();
        let entry = first_seen.entry(anon).or_insert((m.user_id(), kind));
        if m.kind() == MessageKind::Identify && entry.0.is_none() {
            identify_links += 1;
            entry.0 = m.user_id();
        }
    });
    let anonymous_first = first_seen.values().filter(|(_, kind)| *kind == "page").count();
    assert!(anonymous_first > 150, "{anonymous_first} of 200 visitors browsed before signing up");
    assert!(identify_links > 150);
}

/// Local (hour, weekday) of every event, from the message's own timestamp and time zone.
fn local_times(config: SimConfig) -> Vec<(u32, u32)> {
    let text = String::from_utf8(output(config)).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let tz: chrono_tz::Tz = v["context"]["timezone"].as_str().unwrap().parse().unwrap();
            let ts = whisperer_core::time::parse_iso8601(v["timestamp"].as_str().unwrap()).unwrap();
            let local = Utc.timestamp_millis_opt(ts.0).unwrap().with_timezone(&tz);
            (local.hour(), local.weekday().num_days_from_monday())
        })
        .collect()
}

#[test]
fn activity_follows_the_local_day_and_week() {
    let times = local_times(config(400, 42, 2));
    let mut by_hour = [0f64; 24];
    let mut by_weekday = [0f64; 7];
    for &(h, d) in &times {
        by_hour[h as usize] += 1.0;
        by_weekday[d as usize] += 1.0;
    }
    let mean =
        |hours: std::ops::Range<usize>| by_hour[hours.clone()].iter().sum::<f64>() / hours.len() as f64;
    let (day, night) = (mean(10..17), mean(1..6));
    eprintln!("events by local hour {by_hour:?}, by weekday {by_weekday:?}");
    assert!(day > 6.0 * night, "10-17h average {day}, 1-6h average {night}");
    let peak = (0..24).max_by(|&a, &b| by_hour[a].total_cmp(&by_hour[b])).unwrap();
    assert!((8..=18).contains(&peak), "busiest local hour {peak}");
    let weekday = by_weekday[..5].iter().sum::<f64>() / 5.0;
    let weekend = by_weekday[5..].iter().sum::<f64>() / 2.0;
    assert!(weekday > 1.6 * weekend, "weekday {weekday} weekend {weekend}");
}

#[test]
fn cohorts_decline_some_churned_users_come_back() {
    let cfg = config(2000, 120, 4);
    let start = cfg.start.0;
    let mut sim = Simulation::new(cfg).unwrap();
    let week = |t: i64| ((t - start) / (7 * DAY_MS)) as usize;
    let mut signup_week: HashMap<u32, usize> = HashMap::new();
    let mut active: HashSet<(u32, usize)> = HashSet::new();
    let mut last: HashMap<u32, i64> = HashMap::new();
    let mut comebacks = HashSet::new();
    sim.run_to_end(|m| {
        let (u, t) = (m.user_index(), m.timestamp().0);
        if m.kind() == MessageKind::Identify {
            signup_week.entry(u).or_insert(week(t));
        }
        active.insert((u, week(t)));
        if last.get(&u).is_some_and(|&prev| t - prev > 30 * DAY_MS) {
            comebacks.insert(u);
        }
        last.insert(u, t);
    });
    // Users who signed up in the first two weeks: share active in later weeks.
    let cohort: Vec<u32> = signup_week.iter().filter(|&(_, &w)| w < 2).map(|(&u, _)| u).collect();
    assert!(cohort.len() > 100, "cohort of {}", cohort.len());
    let share =
        |w: usize| cohort.iter().filter(|&&u| active.contains(&(u, w))).count() as f64 / cohort.len() as f64;
    let (w2, w6, w16) = (share(2), share(6), share(16));
    eprintln!(
        "cohort of {}: active in week 2 {w2:.2}, week 6 {w6:.2}, week 16 {w16:.2}; {:?}",
        cohort.len(),
        sim.stats()
    );
    assert!(w2 < 0.9 && w2 > w6 + 0.03 && w6 > w16 + 0.03, "weekly active share: {w2} {w6} {w16}");
    assert!(w16 > 0.1, "some users stay: {w16}");
    let stats = sim.stats();
    assert!(stats.churns > 300, "{stats:?}");
    assert!(stats.resurrections > 20, "{stats:?}");
    assert!(comebacks.len() > 20, "users active again after a month of silence: {}", comebacks.len());
    assert_eq!(stats.signups, 2000);
}

#[test]
fn the_oracle_separates_who_goes_quiet() {
    let cfg = config(2000, 90, 9);
    let mut sim = Simulation::new(cfg).unwrap();
    let as_of = Millis(END.0 - 20 * DAY_MS);
    let horizon = 14;
    let mut last_before: HashMap<u32, i64> = HashMap::new();
    sim.advance_to(as_of, |m| {
        last_before.insert(m.user_index(), m.timestamp().0);
    });
    let hazards = sim.oracle_churn_hazards(as_of, horizon);
    let mut active_after = HashSet::new();
    sim.run_to_end(|m| {
        if m.timestamp().0 < as_of.0 + i64::from(horizon) * DAY_MS {
            active_after.insert(m.user_index());
        }
    });
    let index = |id: &str| index_of_user_id(id).unwrap();
    let labels: Vec<bool> = hazards.iter().map(|(id, _)| !active_after.contains(&index(id))).collect();
    let scores: Vec<f64> = hazards.iter().map(|(_, p)| *p).collect();
    let recency: Vec<f64> =
        hazards.iter().map(|(id, _)| (as_of.0 - last_before[&index(id)]) as f64).collect();
    let positives = labels.iter().filter(|&&l| l).count();
    assert!(hazards.len() > 1200 && positives > 200 && positives < hazards.len() - 200, "{positives}");
    let oracle = auc(&scores, &labels).unwrap();
    let naive = auc(&recency, &labels).unwrap();
    eprintln!("{} users, {positives} quiet; AUC oracle {oracle:.3}, recency {naive:.3}", labels.len());
    assert!(oracle >= 0.8, "oracle AUC {oracle}");
    assert!(oracle > naive, "the oracle ({oracle}) must beat recency alone ({naive})");
    // Calibrated: the mean hazard matches the realised share of quiet users.
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let realised = positives as f64 / labels.len() as f64;
    assert!((mean - realised).abs() < 0.05, "mean hazard {mean}, realised {realised}");
    // Users not signed up by then are left out.
    assert!(hazards.iter().all(|(id, _)| sim.hidden_state(id).unwrap().signup_at < as_of));
}

/// A time when the user's local clock shows `hour` (within the day after `after`).
fn local_hour_after(sim: &Simulation, user_id: &str, after: Millis, hour: u32) -> Millis {
    let index = index_of_user_id(user_id).unwrap();
    let traits = crate::population::Traits::draw(sim.config().seed, index);
    let tz = crate::population::ZONES[traits.zone as usize].tz;
    let mut t = after.0 - after.0.rem_euclid(3_600_000) + 3_600_000;
    loop {
        if Utc.timestamp_millis_opt(t).unwrap().with_timezone(&tz).hour() == hour {
            return Millis(t);
        }
        t += 3_600_000;
    }
}

/// Users signed up by now, not churned, with an oracle hazard over 7 days above `min`.
fn at_risk(sim: &Simulation, min: f64) -> Vec<String> {
    sim.oracle_churn_hazards(sim.now(), 7)
        .into_iter()
        .filter(|(id, p)| *p > min && !sim.hidden_state(id).unwrap().churned)
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn a_well_matched_intervention_raises_activity() {
    let cfg = config(3000, 60, 21);
    let t = Millis(END.0 - 14 * DAY_MS);
    let mut control = Simulation::new(cfg.clone()).unwrap();
    control.advance_to(t, |_| {});
    // New users with little discovery, in their afternoon: onboarding help by email.
    let targets: Vec<String> = at_risk(&control, 0.2)
        .into_iter()
        .filter(|id| {
            let s = control.hidden_state(id).unwrap();
            s.discovery < 0.4 && t.0 - s.signup_at.0 < 14 * DAY_MS
        })
        .collect();
    assert!(targets.len() > 60, "{} targets", targets.len());
    let mut treated = Simulation::new(cfg).unwrap();
    treated.advance_to(t, |_| {});
    let mut expected = 0.0;
    for id in &targets {
        let at = local_hour_after(&treated, id, t, 14);
        let iv = Intervention { channel: Channel::Email, angle: Angle::OnboardingHelp, at };
        let uplift = treated.expected_uplift(id, &iv, 7).unwrap();
        assert!((0.0..=1.0).contains(&uplift.p_active_with));
        expected += uplift.uplift;
        let outcome = treated.apply_intervention(id, iv);
        assert_eq!(outcome.status, DeliveryStatus::Delivered);
        assert!(outcome.click_probability <= outcome.open_probability);
    }
    expected /= targets.len() as f64;
    assert!(expected > 0.02, "expected uplift {expected}");
    // Realised: sessions of the targets over the next week, treated vs the same users untouched.
    let until = Millis(t.0 + 7 * DAY_MS);
    let target_set: HashSet<u32> = targets.iter().map(|id| index_of_user_id(id).unwrap()).collect();
    let count = |sim: &mut Simulation| {
        let (mut sessions, mut active) = (0u32, HashSet::new());
        sim.advance_to(until, |m| {
            if target_set.contains(&m.user_index()) && m.name() == Some("Session Started") {
                sessions += 1;
                active.insert(m.user_index());
            }
        });
        (sessions, active.len())
    };
    let (control_sessions, control_active) = count(&mut control);
    let (treated_sessions, treated_active) = count(&mut treated);
    eprintln!(
        "{} targets, expected uplift {expected:.3}; sessions {treated_sessions} vs {control_sessions}, active {treated_active} vs {control_active}",
        targets.len()
    );
    assert!(
        treated_sessions as f64 > 1.1 * control_sessions as f64 && treated_active > control_active,
        "sessions {treated_sessions} vs {control_sessions}, active users {treated_active} vs {control_active}"
    );
    assert_eq!(treated.stats().interventions, targets.len() as u64);
}

#[test]
fn repeating_a_message_wears_it_out_and_annoys() {
    let mut sim = Simulation::new(config(2000, 60, 22)).unwrap();
    let mut t = Millis(END.0 - 14 * DAY_MS);
    sim.advance_to(t, |_| {});
    let targets = at_risk(&sim, 0.3);
    assert!(targets.len() > 50);
    let mut by_round = Vec::new();
    for _ in 0..10 {
        // Mean over the users the channel still reaches (an unsubscribed user feels nothing).
        let (mut total, mut reached) = (0.0, 0);
        for id in &targets {
            let iv = Intervention { channel: Channel::Push, angle: Angle::FeatureTip, at: t };
            let uplift = sim.expected_uplift(id, &iv, 7).unwrap();
            if uplift.open_probability > 0.0 {
                total += uplift.uplift;
                reached += 1;
            }
            sim.apply_intervention(id, iv);
        }
        by_round.push(total / f64::from(reached.max(1)));
        t = Millis(t.0 + 6 * 3_600_000);
        sim.advance_to(t, |_| {});
    }
    eprintln!("{} targets, mean uplift by round {by_round:?}, {:?}", targets.len(), sim.stats());
    assert!(by_round[0] > 0.0, "{by_round:?}");
    assert!(by_round[1] < by_round[0] && by_round[3] < by_round[1], "{by_round:?}");
    assert!(by_round[4..].iter().all(|&u| u < -0.002), "too many messages must hurt: {by_round:?}");
    assert!(sim.stats().unsubscribes > 0, "{:?}", sim.stats());
    // Unsubscribed channels are not delivered any more.
    let unsubscribed = targets
        .iter()
        .find(|id| {
            let iv = Intervention { channel: Channel::Push, angle: Angle::FeatureTip, at: t };
            sim.apply_intervention(id, iv).status == DeliveryStatus::Unsubscribed
        })
        .is_some();
    assert!(unsubscribed);
}

#[test]
fn night_sends_do_worse_than_day_sends() {
    let mut sim = Simulation::new(config(2000, 60, 23)).unwrap();
    let t = Millis(END.0 - 14 * DAY_MS);
    sim.advance_to(t, |_| {});
    let targets = at_risk(&sim, 0.2);
    assert!(targets.len() > 50);
    for channel in [Channel::Push, Channel::Sms, Channel::Email] {
        let (mut day, mut night) = (0.0, 0.0);
        for id in &targets {
            let at_hour = |hour| Intervention {
                channel,
                angle: Angle::FeatureTip,
                at: local_hour_after(&sim, id, t, hour),
            };
            day += sim.expected_uplift(id, &at_hour(14), 7).unwrap().uplift;
            night += sim.expected_uplift(id, &at_hour(3), 7).unwrap().uplift;
        }
        let n = targets.len() as f64;
        eprintln!("{channel}: {n} users, mean uplift day {:.4} night {:.4}", day / n, night / n);
        assert!(night < day - 0.005 * n, "{channel}: night {night} day {day}");
    }
}

#[test]
fn scheduled_interventions_land_when_the_clock_reaches_them() {
    let mut sim = Simulation::new(config(300, 30, 24)).unwrap();
    let t = Millis(END.0 - 10 * DAY_MS);
    sim.advance_to(t, |_| {});
    let id = sim.signed_up_user_ids()[0].clone();
    let later = Millis(t.0 + DAY_MS);
    let iv = Intervention { channel: Channel::Email, angle: Angle::CheckIn, at: later };
    let outcome = sim.apply_intervention(&id, iv);
    assert_eq!((outcome.status, outcome.delivered_at), (DeliveryStatus::Delivered, later));
    assert_eq!(sim.stats().interventions, 0, "not delivered yet");
    sim.advance_to(Millis(later.0 + 1), |_| {});
    assert_eq!(sim.stats().interventions, 1);
    assert!(sim.hidden_state(&id).unwrap().fatigue > 0.9);

    let unknown = sim.apply_intervention("user-999999", iv);
    assert_eq!(unknown.status, DeliveryStatus::UnknownUser);
    let last = sim.user_count() - 1;
    let future_user = user_id_of(last);
    if sim.hidden_state(&future_user).unwrap().signup_at > sim.now() {
        let iv = Intervention { at: sim.now(), ..iv };
        assert_eq!(sim.apply_intervention(&future_user, iv).status, DeliveryStatus::NotSignedUp);
    }
}

#[test]
fn bad_configs_are_refused() {
    let mut cfg = config(10, 10, 1);
    cfg.end = cfg.start;
    assert!(matches!(Simulation::new(cfg), Err(SimError::EmptyWindow { .. })));
    let mut cfg = config(10, 10, 1);
    cfg.signup_growth = 0.0;
    assert_eq!(Simulation::new(cfg).err(), Some(SimError::InvalidGrowth(0.0)));
    let empty = output(config(0, 10, 1));
    assert!(empty.is_empty());
}

#[test]
fn state_per_user_stays_compact() {
    let bytes = Simulation::memory_per_user();
    assert!(bytes <= 200, "{bytes} bytes per user");
}

#[test]
fn contacts_match_the_sign_up_traits_and_addresses_lead_back_to_their_user() {
    let mut sim = Simulation::new(config(200, 20, 3)).unwrap();
    let mut identified = HashMap::new();
    sim.run_to_end(|m| {
        let v = m.to_value();
        if v["type"] == "identify" && v["traits"]["email"].is_string() {
            identified.insert(v["userId"].as_str().unwrap().to_owned(), v);
        }
    });
    assert!(identified.len() > 100, "{} sign-ups", identified.len());
    let mut locales = HashSet::new();
    for (user_id, v) in &identified {
        let c = sim.contact(user_id).unwrap();
        assert_eq!(c.email, v["traits"]["email"].as_str().unwrap());
        assert_eq!(c.name, v["traits"]["name"].as_str().unwrap());
        assert_eq!(c.locale, v["context"]["locale"].as_str().unwrap());
        assert_eq!(c.time_zone, v["traits"]["timezone"].as_str().unwrap());
        assert!(c.phone.starts_with('+') && c.phone.len() <= 16, "{}", c.phone);
        for channel in [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp] {
            let address = c.address(channel).unwrap();
            assert_eq!(sim.user_of_address(channel, address).as_deref(), Some(user_id.as_str()));
        }
        locales.insert(c.locale);
    }
    assert!(locales.len() > 3, "{locales:?}");
    // Another user's name on this user's number, or an address nobody has, leads nowhere.
    let c = sim.contact("user-000007").unwrap();
    let other = sim.contact("user-000008").unwrap();
    let forged = c.email.replace(".7@", ".8@");
    assert_ne!(forged, other.email, "the local part carries the name too");
    assert_eq!(sim.user_of_address(Channel::Email, &forged), None);
    assert_eq!(sim.user_of_address(Channel::Email, "nobody@example.org"), None);
    assert_eq!(sim.user_of_address(Channel::Push, &c.phone), None);
    assert_eq!(sim.user_of_address(Channel::Sms, "+999999999999"), None);
    assert_eq!(sim.contact("user-999999"), None);
}
