//! `whisperer churn train|score`: churn models trained from a workspace's own log.

use anyhow::Context;
use std::io::Write;
use std::sync::Arc;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_models::{CHURN_MODEL_KIND, ChurnModel, Replay};
use whisperer_store::Store;

const PAGE: usize = 10_000;

/// Reads a workspace's log up to `as_of`, page by page.
pub async fn replay(store: &Arc<dyn Store>, ws: &WorkspaceId, as_of: Millis) -> anyhow::Result<Replay> {
    let mut replay = Replay::empty(as_of.0);
    whisperer_store::scan_log(store.as_ref(), ws, PAGE, |page| -> Result<(), whisperer_store::StoreError> {
        page.iter().for_each(|e| replay.push(e));
        Ok(())
    })
    .await
    .context("cannot read the event log")?;
    Ok(replay.finish())
}

/// A model just trained and stored, with the replay it learnt from.
pub struct Trained {
    pub model: ChurnModel,
    pub replay: Replay,
}

/// Trains, stores the model as the workspace's new version and prints its quality.
pub async fn train(
    store: &Arc<dyn Store>,
    ws: &WorkspaceId,
    as_of: Millis,
    horizon_days: u32,
    out: &mut impl Write,
) -> anyhow::Result<Trained> {
    let started = std::time::Instant::now();
    let replay = replay(store, ws, as_of).await?;
    let read = started.elapsed();
    let model = whisperer_models::train(&replay, as_of.0, horizon_days)?;
    let r = &model.report;
    let version = store
        .save_model(ws, CHURN_MODEL_KIND, Millis::now(), as_of, &serde_json::to_string(r)?, &model.to_bytes())
        .await
        .context("cannot store the model")?;
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    writeln!(out, "churn model for workspace {ws} as of {as_of}, horizon {horizon_days} days")?;
    writeln!(
        out,
        "  events read      {} ({:.1} s); training {:.1} s",
        replay.events(),
        read.as_secs_f64(),
        (started.elapsed() - read).as_secs_f64()
    )?;
    writeln!(
        out,
        "  training         {} examples at {} weekly cut-offs, {} churned",
        r.train_examples,
        r.train_cutoffs.len(),
        pct(r.train_churn_rate)
    )?;
    writeln!(
        out,
        "  validation       {} examples at {}, {} churned",
        r.validation_examples,
        Millis(r.validation_cutoff),
        pct(r.validation_churn_rate)
    )?;
    writeln!(out, "  {:<22} {:>7} {:>9} {:>7}", "model", "AUC", "log-loss", "Brier")?;
    for (name, q) in [("logistic regression", &r.logistic), ("gradient boosting", &r.gradient_boosting)] {
        writeln!(out, "  {name:<22} {:>7.4} {:>9.4} {:>7.4}", q.auc, q.log_loss, q.brier)?;
    }
    writeln!(out, "  {:<22} {:>7.4}", "recency only", r.recency_auc)?;
    writeln!(out, "chosen: {} (stored as version {version})", r.chosen.as_str())?;
    Ok(Trained { model, replay })
}

/// Writes `user_id,churn_probability,top_reasons` for every user seen up to `as_of`, with the
/// newest model trained on data up to then.
pub async fn score(
    store: &Arc<dyn Store>,
    ws: &WorkspaceId,
    as_of: Millis,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let (version, bytes) =
        store.latest_model(ws, CHURN_MODEL_KIND, Some(as_of)).await?.with_context(|| {
            format!("no churn model trained on data up to {as_of}: run `whisperer churn train` first")
        })?;
    let model = ChurnModel::from_bytes(&bytes)?;
    let replay = replay(store, ws, as_of).await?;
    let (persons, x) = replay.current(&model.spec, as_of.0);
    let scores = model.score(&x, persons.len());
    writeln!(out, "user_id,churn_probability,top_reasons")?;
    let mut rows = 0;
    for (person, score) in persons.iter().zip(&scores) {
        let Some(user) = replay.names.get(person) else { continue };
        let reasons: Vec<String> =
            score.reasons.iter().map(|(name, value, _)| format!("{name}={}", round(*value))).collect();
        writeln!(out, "{},{:.6},{}", csv(user), score.probability, csv(&reasons.join(";")))?;
        rows += 1;
    }
    eprintln!(
        "scored {rows} users with churn model version {} ({})",
        version.version,
        model.report.chosen.as_str()
    );
    Ok(rows)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A CSV field, quoted when it must be.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv("user-1"), "user-1");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
