//! Churn models on simulator data, scored on the simulator's future against its oracle.

use std::collections::HashMap;
use whisperer_core::{EventType, Millis, NewEvent, StoredEvent, WorkspaceId};
use whisperer_models::metrics::auc;
use whisperer_models::{Replay, TrainError, train};
use whisperer_sim::{MessageKind, SimConfig, Simulation};

const DAY: i64 = 86_400_000;

#[test]
fn the_chosen_model_beats_recency_and_approaches_the_oracle() {
    let end = Millis(1_717_200_000_000);
    let horizon = 14;
    let config =
        SimConfig { users: 2500, seed: 5, start: Millis(end.0 - 150 * DAY), end, ..SimConfig::default() };
    let mut sim = Simulation::new(config).unwrap();
    let ws = WorkspaceId::generate();
    let as_of = end.0 - horizon as i64 * DAY;
    let mut events = Vec::new();
    sim.advance_to(Millis(as_of), |m| events.push(m.to_stored_event(&ws, events.len() as i64 + 1)));
    let oracle: HashMap<String, f64> = sim.oracle_churn_hazards(Millis(as_of), horizon).into_iter().collect();
    let mut future_active = std::collections::HashSet::new();
    sim.run_to_end(|m| {
        if matches!(m.kind(), MessageKind::Track | MessageKind::Page) {
            future_active.insert(m.user_index() as i64);
        }
    });

    let replay = Replay::new(events, as_of);
    let model = train(&replay, as_of, horizon).unwrap();
    let r = &model.report;
    eprintln!("{}", serde_json::to_string_pretty(r).unwrap());
    assert!(r.logistic.auc > r.recency_auc - 0.02 && r.gradient_boosting.auc > r.recency_auc - 0.02, "{r:?}");

    // The future: users active in the 30 days before as_of, scored with features at as_of.
    let (persons, x) = replay.current(&model.spec, as_of);
    let scores = model.score(&x, persons.len());
    let cols = model.spec.width();
    let (mut p, mut o, mut rec, mut y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, person) in persons.iter().enumerate() {
        let recency = x[i * cols];
        if recency >= 30.0 {
            continue;
        }
        let Some(name) = replay.names.get(person) else { continue };
        let Some(h) = oracle.get(name) else { continue };
        p.push(scores[i].probability);
        o.push(*h);
        rec.push(recency);
        y.push(!future_active.contains(person));
        assert!(scores[i].probability.is_finite() && scores[i].reasons.len() <= 3);
    }
    let (model_auc, oracle_auc, recency_auc) =
        (auc(&p, &y).unwrap(), auc(&o, &y).unwrap(), auc(&rec, &y).unwrap());
    eprintln!("future: model {model_auc:.3} oracle {oracle_auc:.3} recency {recency_auc:.3} n={}", y.len());
    assert!(model_auc > recency_auc, "{model_auc} vs recency {recency_auc}");
    assert!(model_auc >= 0.9 * oracle_auc, "{model_auc} vs oracle {oracle_auc}");
}

#[test]
fn too_little_history_and_one_class_are_clear_errors() {
    let ws = WorkspaceId::generate();
    let now = 1_717_200_000_000;
    let empty = Replay::new(Vec::new(), now);
    assert!(matches!(train(&empty, now, 14), Err(TrainError::NoEvents { .. })));
    let event = |seq: i64, person: i64, at: i64| StoredEvent {
        seq,
        person_id: person,
        event: NewEvent {
            workspace_id: ws.clone(),
            message_id: format!("m{seq}"),
            event_type: EventType::Track,
            name: Some("Order Completed".into()),
            user_id: Some(format!("u{person}")),
            anonymous_id: None,
            previous_id: None,
            timestamp: Millis(at),
            received_at: Millis(at),
            raw: r#"{"type":"track","event":"Order Completed","properties":{"revenue":5}}"#.into(),
            enrichment: "{}".into(),
        },
    };
    let short = Replay::new((0..100).map(|i| event(i, i % 10, now - i * DAY / 10)), now);
    let err = train(&short, now, 14).unwrap_err();
    assert!(err.to_string().contains("too little history"), "{err}");
    // 200 shoppers who order every day: nobody ever churns
    let loyal = Replay::new((0..200 * 90).map(|i| event(i, i % 200, now - 90 * DAY + (i / 200) * DAY)), now);
    let err = train(&loyal, now, 14).unwrap_err();
    assert!(err.to_string().contains("no churned users"), "{err}");
    assert!(matches!(train(&loyal, now, 0), Err(TrainError::Horizon(0))));
}

/// A shop whose only event is `Order Completed` with `revenue`: customers order at their own
/// rate until they stop for good.
#[test]
fn a_shop_with_one_event_gets_a_working_model() {
    use rand::{Rng, SeedableRng};
    let ws = WorkspaceId::generate();
    let end = 1_717_200_000_000i64;
    let start = end - 180 * DAY;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let mut events = Vec::new();
    for customer in 0..1500i64 {
        let per_day: f64 = rng.random_range(0.05..0.6);
        let joined = start + rng.random_range(0..120) * DAY;
        let stops = joined + rng.random_range(10..400) * DAY;
        let mut t = joined;
        while t < end.min(stops) {
            t += (-(1.0 - rng.random::<f64>()).ln() / per_day * DAY as f64) as i64;
            let revenue = rng.random_range(5.0..120.0f64);
            let raw = format!(
                r#"{{"type":"track","event":"Order Completed","userId":"c{customer}","properties":{{"revenue":{revenue:.2}}}}}"#
            );
            events.push(StoredEvent {
                seq: 0,
                person_id: customer,
                event: NewEvent {
                    workspace_id: ws.clone(),
                    message_id: format!("o{customer}-{t}"),
                    event_type: EventType::Track,
                    name: Some("Order Completed".into()),
                    user_id: Some(format!("c{customer}")),
                    anonymous_id: None,
                    previous_id: None,
                    timestamp: Millis(t),
                    received_at: Millis(t),
                    raw,
                    enrichment: "{}".into(),
                },
            });
        }
    }
    let replay = Replay::new(events, end);
    let model = train(&replay, end, 14).unwrap();
    let r = &model.report;
    assert!(r.features.contains(&"count:Order Completed".to_string()), "{:?}", r.features);
    let best = r.logistic.auc.max(r.gradient_boosting.auc);
    assert!(best > 0.7 && best >= r.recency_auc - 0.01, "{r:?}");
    let (persons, x) = replay.current(&model.spec, end);
    let scores = model.score(&x, persons.len());
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(&s.probability) && s.probability.is_finite()));
    // Stored and loaded, it scores the same; probabilities alone agree with the explained ones.
    let loaded = whisperer_models::ChurnModel::from_bytes(&model.to_bytes()).unwrap();
    assert_eq!(loaded.score(&x, persons.len()), scores);
    let plain = model.probabilities(&x, persons.len());
    assert!(plain.iter().zip(&scores).all(|(p, s)| (p - s.probability).abs() < 1e-9));
    assert!(
        scores.iter().any(|s| s.reasons.iter().any(|(f, _, _)| f.contains("revenue") || f.contains("Order")))
    );
}
