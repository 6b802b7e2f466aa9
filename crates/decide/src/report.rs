//! A campaign's experiment report from its settled decisions in the audit trail (for
//! `whisperer experiment report` and `GET /v1/campaigns/{id}/experiment`), through
//! [`crate::experiment`].

use serde_json::{Value, json};
use whisperer_core::WorkspaceId;
use whisperer_store::{CampaignRecord, DecisionQuery, DecisionRecord, Store, StoreError};

use crate::experiment::{self, ReportError, Settled};
use crate::{Campaign, CampaignSpec, PolicyConfig};

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum CampaignReportError {
    #[error("unknown campaign {0:?}")]
    UnknownCampaign(String),
    #[error("confidence must be between 0.5 and 1, got {0}")]
    BadConfidence(f64),
    #[error("campaign {0}: {1}")]
    Report(String, ReportError),
    #[error("stored campaign is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const PAGE: usize = 10_000;

/// A campaign's current definition and every decision made for it, in decision order (the
/// audit trail pages newest first).
pub async fn campaign_log(
    store: &dyn Store,
    ws: &WorkspaceId,
    campaign: &str,
) -> Result<(CampaignRecord, CampaignSpec, Campaign, Vec<DecisionRecord>), CampaignReportError> {
    let record = store
        .campaign(ws, campaign, None)
        .await?
        .ok_or_else(|| CampaignReportError::UnknownCampaign(campaign.to_owned()))?;
    let corrupt = |e: crate::SpecErrors| CampaignReportError::Corrupt(e.to_string());
    let spec = CampaignSpec::parse(&record.definition).map_err(corrupt)?;
    let compiled = spec.compile(record.version).map_err(corrupt)?;
    let mut decisions = Vec::new();
    let mut query =
        DecisionQuery { campaign: Some(campaign.to_owned()), limit: PAGE, ..DecisionQuery::default() };
    loop {
        let page = store.decisions(ws, &query).await?;
        let Some(last) = page.last() else { break };
        query.before = Some((last.at, last.id.clone()));
        let full = page.len() == PAGE;
        decisions.extend(page);
        if !full {
            break;
        }
    }
    decisions.reverse();
    Ok((record, spec, compiled, decisions))
}

pub async fn campaign_report(
    store: &dyn Store,
    ws: &WorkspaceId,
    campaign: &str,
    confidence: f64,
) -> Result<Value, CampaignReportError> {
    if !(confidence > 0.5 && confidence < 1.0) {
        return Err(CampaignReportError::BadConfidence(confidence));
    }
    let (record, spec, compiled, decisions) = campaign_log(store, ws, campaign).await?;
    let arms: Vec<String> = compiled.arms.iter().map(|a| a.name.clone()).collect();
    let weights = match &spec.policy {
        PolicyConfig::Ab { weights } => Some(weights.clone()),
        _ => None,
    };
    let mut settled = Vec::new();
    let (mut pending, mut other_versions) = (0u64, 0u64);
    for d in &decisions {
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
        settled.push(Settled {
            arm: if d.holdout { None } else { d.arm.clone() },
            converted,
            value: if converted { d.value.unwrap_or(0.0) } else { 0.0 },
        });
    }
    let mut out = match experiment::report(&settled, &arms, compiled.holdout, weights.as_deref(), confidence)
    {
        Ok(report) => {
            let mut out = serde_json::to_value(&report).expect("reports serialise");
            out["status"] = json!("ready");
            out
        }
        // Too early to compare: say so rather than fail, the decisions are on their way.
        Err(e @ (ReportError::Empty | ReportError::NoControl(_))) => {
            json!({"status": "waiting", "reason": e.to_string(), "confidence": confidence, "groups": [], "comparisons": []})
        }
        Err(e) => return Err(CampaignReportError::Report(campaign.to_owned(), e)),
    };
    out["campaign"] = json!(campaign);
    out["version"] = json!(record.version);
    out["policy"] = json!(spec.policy.name());
    out["settled"] = json!(settled.len());
    out["pending"] = json!(pending);
    out["other_arms"] = json!(other_versions);
    Ok(out)
}
