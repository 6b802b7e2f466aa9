//! `whisperer export events` and `whisperer import`: the event log out as JSON lines, and
//! historical Segment messages in through the same decode/validate/enrich/commit pipeline.

use anyhow::Context;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use whisperer_api::views::EventView;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_ingest::enrich::RequestMeta;
use whisperer_ingest::{Endpoint, Ingestor};
use whisperer_store::Store;

const EXPORT_PAGE: usize = 2000;

/// Writes every event of a workspace, in log order, one JSON object per line.
pub async fn export_events(
    store: &Arc<dyn Store>,
    workspace: &WorkspaceId,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(out);
    let mut written = 0u64;
    whisperer_store::scan_log(store.as_ref(), workspace, EXPORT_PAGE, |page| -> anyhow::Result<()> {
        for event in page {
            serde_json::to_writer(&mut out, &EventView::of(event))?;
            out.write_all(b"\n")?;
            written += 1;
        }
        Ok(())
    })
    .await?;
    out.flush()?;
    Ok(written)
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The first refusals, by line number (1-based).
    pub errors: Vec<String>,
}

const IMPORT_BATCH: usize = 500;
/// `{"batch":[` and `]}`.
const BATCH_ENVELOPE_BYTES: usize = 16;
const MAX_REPORTED_ERRORS: usize = 20;

/// Loads a JSON-lines file of Segment messages (or of `export events` output) into a workspace.
pub async fn import_file(
    ingestor: &Ingestor,
    workspace: &WorkspaceId,
    path: &Path,
    show_progress: bool,
) -> anyhow::Result<ImportSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = BufReader::new(file);
    let mut progress = Progress::new(total_bytes, show_progress && std::io::stderr().is_terminal());
    let mut summary = ImportSummary::default();
    let mut batch: Vec<(u64, String)> = Vec::with_capacity(IMPORT_BATCH);
    let mut batch_bytes = 0usize;
    // A batch body stays under the request limit, as a client's would.
    let max_body = ingestor.limits().max_request_bytes.saturating_sub(BATCH_ENVELOPE_BYTES);
    let mut bytes_read = 0u64;
    for (n, line) in reader.lines().enumerate() {
        let line_no = n as u64 + 1;
        let line = line.with_context(|| format!("cannot read line {line_no} of {}", path.display()))?;
        bytes_read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        let message = match message_of_line(&line) {
            Ok(message) => message,
            Err(e) => {
                summary.reject(line_no, &e);
                continue;
            }
        };
        if !batch.is_empty() && (batch.len() >= IMPORT_BATCH || batch_bytes + message.len() + 1 > max_body) {
            import_batch(ingestor, workspace, &mut batch, &mut summary).await?;
            batch_bytes = 0;
            progress.show(bytes_read, summary.lines);
        }
        batch_bytes += message.len() + 1;
        batch.push((line_no, message));
    }
    import_batch(ingestor, workspace, &mut batch, &mut summary).await?;
    progress.finish(bytes_read, summary.lines);
    Ok(summary)
}

impl ImportSummary {
    fn reject(&mut self, line: u64, reason: &str) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("line {line}: {reason}"));
        }
    }
}

/// The Segment message a line holds. Lines written by `export events` carry the message under
/// `message`; its corrected timestamp and message id are put back so a re-import is faithful.
fn message_of_line(line: &str) -> Result<String, String> {
    let raw: &RawValue = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    if !raw.get().contains("\"enrichment\"") {
        return Ok(raw.get().to_owned());
    }
    let mut value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| format!("not valid JSON: {e}"))?;
    let is_export = value.get("message").is_some_and(|m| m.is_object()) && value.get("enrichment").is_some();
    if !is_export {
        return Ok(raw.get().to_owned());
    }
    let timestamp = value.get("timestamp").cloned();
    let message_id = value.get("messageId").cloned();
    let mut message = value["message"].take();
    if let Some(obj) = message.as_object_mut() {
        if let Some(ts) = timestamp {
            obj.insert("timestamp".into(), ts);
        }
        if let Some(id) = message_id {
            obj.insert("messageId".into(), id);
        }
        obj.remove("sentAt");
    }
    Ok(message.to_string())
}

async fn import_batch(
    ingestor: &Ingestor,
    workspace: &WorkspaceId,
    batch: &mut Vec<(u64, String)>,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut body = String::with_capacity(batch.iter().map(|(_, m)| m.len() + 1).sum::<usize>() + 16);
    body.push_str("{\"batch\":[");
    for (i, (_, message)) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(message);
    }
    body.push_str("]}");
    // Each line was checked as JSON on its own and batches respect the size limit, so only a
    // line too large or too deep by itself refuses the whole body; then fall back to one
    // message per request so the error lands on its line.
    let decoded = match ingestor.decode(Endpoint::Batch, body.as_bytes(), None) {
        Ok(decoded) => decoded,
        Err(_) if batch.len() > 1 => {
            let lines: Vec<_> = std::mem::take(batch);
            for line in lines {
                let mut one = vec![line];
                Box::pin(import_batch(ingestor, workspace, &mut one, summary)).await?;
            }
            return Ok(());
        }
        Err(e) => {
            summary.reject(batch[0].0, &e.to_string());
            batch.clear();
            return Ok(());
        }
    };
    let meta = RequestMeta { received_at: Millis::now(), remote_ip: None, historical: true };
    let report = ingestor
        .ingest(workspace, decoded.messages, &meta)
        .await
        .context("cannot store the imported events")?;
    summary.accepted += report.accepted as u64;
    summary.duplicates += report.duplicates as u64;
    for r in &report.rejected {
        summary.reject(batch[r.index].0, &format!("{}: {}", r.code.code(), r.message));
    }
    batch.clear();
    Ok(())
}

/// A progress bar on stderr, redrawn at most five times a second.
struct Progress {
    total_bytes: u64,
    enabled: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(total_bytes: u64, enabled: bool) -> Self {
        let now = Instant::now();
        Self { total_bytes, enabled, started: now, last: now - Duration::from_secs(1) }
    }

    fn show(&mut self, bytes: u64, lines: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        self.draw(bytes, lines);
    }

    fn draw(&self, bytes: u64, lines: u64) {
        const WIDTH: usize = 30;
        let fraction =
            if self.total_bytes == 0 { 1.0 } else { (bytes as f64 / self.total_bytes as f64).min(1.0) };
        let filled = (fraction * WIDTH as f64) as usize;
        let rate = lines as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r[{}{}] {:>3.0}%  {lines} lines  {rate:.0} lines/s ",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            fraction * 100.0
        );
    }

    fn finish(&mut self, bytes: u64, lines: u64) {
        if self.enabled {
            self.draw(bytes, lines);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_become_messages_again() {
        let line = r#"{"seq":1,"messageId":"m1","type":"track","personId":1,"timestamp":"2024-01-01T00:00:00.000Z","receivedAt":"2024-01-02T00:00:00.000Z","message":{"type":"track","event":"E","userId":"u","timestamp":"2024-01-01T01:00:00Z","sentAt":"x"},"enrichment":{}}"#;
        let m: serde_json::Value = serde_json::from_str(&message_of_line(line).unwrap()).unwrap();
        assert_eq!(m["timestamp"], "2024-01-01T00:00:00.000Z");
        assert_eq!(m["messageId"], "m1");
        assert!(m.get("sentAt").is_none());
        let plain = r#"{"type":"track","event":"E","userId":"u"}"#;
        assert_eq!(message_of_line(plain).unwrap(), plain);
        assert!(message_of_line("{oops").is_err());
    }
}
