//! `whisperer experiment report`: a campaign's settled decisions from the audit trail, through
//! `whisperer_decide::experiment`.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use whisperer_core::WorkspaceId;
use whisperer_decide::experiment::{self, Settled};
use whisperer_decide::{CampaignSpec, PolicyConfig};
use whisperer_store::{DecisionQuery, Store};

const PAGE: usize = 10_000;

pub async fn report(
    store: &dyn Store,
    ws: &WorkspaceId,
    campaign: &str,
    confidence: f64,
) -> anyhow::Result<Value> {
    if !(confidence > 0.5 && confidence < 1.0) {
        bail!("--confidence must be between 0.5 and 1, got {confidence}");
    }
    let record = store
        .campaign(ws, campaign, None)
        .await?
        .with_context(|| format!("unknown campaign {campaign:?}"))?;
    let spec = CampaignSpec::parse(&record.definition)
        .map_err(|e| anyhow::anyhow!("stored campaign is invalid: {e}"))?;
    let compiled =
        spec.compile(record.version).map_err(|e| anyhow::anyhow!("stored campaign is invalid: {e}"))?;
    let arms: Vec<String> = compiled.arms.iter().map(|a| a.name.clone()).collect();
    let weights = match &spec.policy {
        PolicyConfig::Ab { weights } => Some(weights.clone()),
        _ => None,
    };
    // Newest first from the store; the report wants decision order.
    let mut settled = Vec::new();
    let (mut pending, mut other_versions) = (0u64, 0u64);
    let mut query =
        DecisionQuery { campaign: Some(campaign.to_owned()), limit: PAGE, ..DecisionQuery::default() };
    loop {
        let page = store.decisions(ws, &query).await?;
        let Some(last) = page.last() else { break };
        query.before = Some((last.at, last.id.clone()));
        for d in &page {
            if matches!(d.status.as_str(), "not_eligible" | "paused") {
                continue;
            }
            if !d.holdout && !d.arm.as_ref().is_some_and(|a| arms.contains(a)) {
                other_versions += 1;
                continue;
            }
            let Some(outcome) = d.outcome.as_deref() else {
                pending += 1;
                continue;
            };
            let converted = outcome == "converted";
            settled.push((
                d.at,
                d.id.clone(),
                Settled {
                    arm: if d.holdout { None } else { d.arm.clone() },
                    converted,
                    value: if converted { d.value.unwrap_or(0.0) } else { 0.0 },
                },
            ));
        }
        if page.len() < PAGE {
            break;
        }
    }
    settled.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let settled: Vec<Settled> = settled.into_iter().map(|(_, _, s)| s).collect();
    let report = experiment::report(&settled, &arms, compiled.holdout, weights.as_deref(), confidence)
        .with_context(|| format!("campaign {campaign}"))?;
    let mut out = serde_json::to_value(&report)?;
    out["campaign"] = json!(campaign);
    out["version"] = json!(record.version);
    out["policy"] = json!(spec.policy.name());
    out["settled"] = json!(settled.len());
    out["pending"] = json!(pending);
    out["other_arms"] = json!(other_versions);
    Ok(out)
}
