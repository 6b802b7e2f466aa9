//! `whisperer cohorts retention`: a workspace's retention by first-seen week or month, as an
//! aligned table in the terminal or, with `--json`, the API's JSON (`api::views`, so the two
//! never drift). Parameters go through the same parser as the API's query string.

use anyhow::Context;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};
use whisperer_cohorts::{Group, Retention, RetentionQuery};

use crate::config::{Config, StoreArgs};

#[derive(clap::Subcommand)]
pub enum CohortsCommand {
    /// Retention by first-seen cohort: rows are cohorts, columns periods since first activity.
    Retention(RetentionArgs),
}

#[derive(clap::Args)]
pub struct RetentionArgs {
    #[arg(long)]
    workspace: String,
    /// Cohort and column length: week (from Monday 00:00 UTC) or month (calendar month, UTC).
    #[arg(long, default_value = "week")]
    period: String,
    /// One table per value of this trait (from identify calls); the 20 largest, then (none) and (other).
    #[arg(long)]
    split: Option<String>,
    /// An event name: persons who did it within --within-days of their first activity, and the others.
    #[arg(long, requires = "within_days")]
    behavior: Option<String>,
    /// The behaviour window in days.
    #[arg(long, requires = "behavior")]
    within_days: Option<String>,
    /// Only persons first active at or after this ISO-8601 time.
    #[arg(long)]
    from: Option<String>,
    /// Only persons first active before this ISO-8601 time.
    #[arg(long)]
    to: Option<String>,
    /// At most this many columns (1 to 520).
    #[arg(long)]
    periods: Option<String>,
    /// Print the JSON of `GET /v1/cohorts/retention` instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(command: CohortsCommand) -> anyhow::Result<()> {
    match command {
        CohortsCommand::Retention(args) => retention(args).await,
    }
}

async fn retention(args: RetentionArgs) -> anyhow::Result<()> {
    let mut params = vec![("period", args.period.as_str())];
    let optional = [
        ("split", &args.split),
        ("behavior", &args.behavior),
        ("within_days", &args.within_days),
        ("from", &args.from),
        ("to", &args.to),
        ("periods", &args.periods),
    ];
    params.extend(optional.iter().filter_map(|(name, value)| Some((*name, value.as_deref()?))));
    let query = RetentionQuery::from_params(params)?;
    let db = crate::server::open_store(&Config::load(&args.store, None)?).await?;
    let ws = crate::admin::existing_workspace(&db, &args.workspace).await?;
    let started = Instant::now();
    let report = whisperer_cohorts::retention(db.as_ref(), &ws, &query)
        .await
        .context("cannot compute the retention report")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &whisperer_api::views::retention_json(&report))?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(render(&report, started.elapsed()).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// The report as text: a header line, then per group a title and an aligned table with one row
/// per cohort (label, size, the share active in each period since) and the group's curve.
/// Periods not observed yet are left blank.
pub fn render(report: &Retention, took: Duration) -> String {
    let unit = match report.period {
        whisperer_cohorts::Period::Week => "week (Monday to Monday, UTC)",
        whisperer_cohorts::Period::Month => "month (UTC)",
    };
    let mut text = format!("retention by {unit}: {} persons", report.persons);
    if let Some(as_of) = report.as_of {
        let _ = write!(text, ", newest activity {}", as_of.to_rfc3339());
    }
    let _ = writeln!(text, " ({} events read in {:.2} s)", report.events_scanned, took.as_secs_f64());
    if report.other_values > 0 {
        let _ = writeln!(
            text,
            "{} smaller values of {} are grouped as (other)",
            report.other_values,
            report.split.as_deref().unwrap_or_default()
        );
    }
    if report.persons == 0 {
        text.push_str("no activity in this workspace (and range)\n");
        return text;
    }
    for group in &report.groups {
        text.push('\n');
        let _ = writeln!(text, "{} ({} persons)", report.group_label(group), group.persons);
        if group.persons > 0 {
            table(&mut text, report.columns, group);
        }
    }
    text
}

fn table(text: &mut String, columns: usize, group: &Group) {
    const TOTAL: &str = "all";
    let label_width =
        group.cohorts.iter().map(|c| c.label.len()).chain(["cohort".len(), TOTAL.len()]).max().unwrap_or(0);
    let size_width = group.persons.to_string().len().max("size".len());
    let cell_width = columns.saturating_sub(1).to_string().len().max("100.0%".len());
    let mut line = |label: &str, size: &str, cells: Vec<String>| {
        let mut row = format!("{label:<label_width$}  {size:>size_width$}");
        for cell in cells {
            let _ = write!(row, " {cell:>cell_width$}");
        }
        text.push_str(row.trim_end());
        text.push('\n');
    };
    line("cohort", "size", (0..columns).map(|k| k.to_string()).collect());
    let shown = |cells: &[Option<whisperer_cohorts::Cell>]| -> Vec<String> {
        cells.iter().map(|c| c.map_or(String::new(), |c| percent(c.fraction))).collect()
    };
    for cohort in &group.cohorts {
        line(&cohort.label, &cohort.size.to_string(), shown(&cohort.cells));
    }
    line(TOTAL, &group.persons.to_string(), shown(&group.curve));
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisperer_cohorts::{Cell, CohortRow, Period};
    use whisperer_core::Millis;

    #[test]
    fn the_table_is_aligned_and_leaves_unobserved_periods_blank() {
        let cell = |active, persons| Some(Cell::new(active, persons));
        let report = Retention {
            period: Period::Week,
            columns: 3,
            split: None,
            behavior: None,
            from: None,
            to: None,
            as_of: Some(Millis(1_705_395_600_000)),
            persons: 3,
            events_scanned: 12,
            other_values: 0,
            groups: vec![Group {
                trait_group: None,
                did_behavior: None,
                persons: 3,
                cohorts: vec![
                    CohortRow {
                        index: 0,
                        start: Millis(0),
                        label: "2024-01-01".into(),
                        size: 2,
                        cells: vec![cell(2, 2), cell(1, 2), cell(0, 2)],
                    },
                    CohortRow {
                        index: 1,
                        start: Millis(0),
                        label: "2024-01-08".into(),
                        size: 1,
                        cells: vec![cell(1, 1), cell(1, 1), None],
                    },
                ],
                curve: vec![cell(3, 3), cell(2, 3), cell(0, 2)],
            }],
        };
        let text = render(&report, Duration::from_millis(1500));
        let expected = "\
retention by week (Monday to Monday, UTC): 3 persons, newest activity 2024-01-16T09:00:00.000Z (12 events read in 1.50 s)

all (3 persons)
cohort      size      0      1      2
2024-01-01     2 100.0%  50.0%   0.0%
2024-01-08     1 100.0% 100.0%
all            3 100.0%  66.7%   0.0%
";
        assert_eq!(text, expected);
    }
}
