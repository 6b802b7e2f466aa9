//! Enrichment: what ingestion adds to a message before it is stored. The original message is
//! kept as sent (except the IP, when anonymisation is on); additions live beside it.

use serde::Serialize;
use std::net::IpAddr;
use whisperer_core::{Millis, NewEvent, WorkspaceId};

use crate::decode::Draft;
use crate::geo::{Geo, GeoIp};
use crate::user_agent::{UserAgent, UserAgentParser};

/// Facts about the request a message arrived in.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub received_at: Millis,
    /// The peer address, used when a message carries no `context.ip`.
    pub remote_ip: Option<IpAddr>,
    /// Imported history: timestamps are taken as given, with no clock-skew correction.
    pub historical: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Enrichment<'a> {
    received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<String>,
    /// How far the client's clock was ahead of ours (negative: behind), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a UserAgent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo: Option<Geo>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    violations: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    generated_message_id: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    historical: bool,
}

pub struct Enricher {
    user_agents: UserAgentParser,
    geo: Option<GeoIp>,
    anonymize_ip: bool,
}

impl Enricher {
    pub fn new(geo: Option<GeoIp>, anonymize_ip: bool) -> Self {
        Self { user_agents: UserAgentParser::new(10_000), geo, anonymize_ip }
    }

    /// Turns a validated draft into the event to store. `violations` are tracking-plan findings
    /// of a workspace in `warn` mode.
    pub fn enrich(
        &self,
        workspace: &WorkspaceId,
        draft: Draft,
        meta: &RequestMeta,
        violations: &[String],
    ) -> NewEvent {
        let (timestamp, clock_skew_ms) = corrected_timestamp(&draft, meta);
        let ip = draft.ip.as_deref().and_then(|s| s.trim().parse::<IpAddr>().ok()).or(meta.remote_ip);
        let geo = ip.and_then(|ip| self.geo.as_ref()?.lookup(ip));
        let stored_ip = ip.map(|ip| if self.anonymize_ip { anonymize(ip) } else { ip });
        let user_agent = draft.user_agent.as_deref().map(|ua| self.user_agents.parse(ua));
        let generated_message_id = draft.message_id.is_none();
        let message_id = draft.message_id.unwrap_or_else(generate_message_id);
        let raw = match (self.anonymize_ip, &draft.ip, stored_ip) {
            (true, Some(_), Some(anonymized)) => replace_context_ip(&draft.raw, &anonymized.to_string()),
            _ => draft.raw,
        };
        let enrichment = Enrichment {
            received_at: meta.received_at.to_rfc3339(),
            original_timestamp: draft.timestamp.map(Millis::to_rfc3339),
            sent_at: draft.sent_at.map(Millis::to_rfc3339),
            clock_skew_ms,
            ip: stored_ip.map(|ip| ip.to_string()),
            user_agent: user_agent.as_deref(),
            geo,
            violations,
            generated_message_id,
            historical: meta.historical,
        };
        NewEvent {
            workspace_id: workspace.clone(),
            message_id,
            event_type: draft.event_type,
            name: draft.name,
            user_id: draft.user_id,
            anonymous_id: draft.anonymous_id,
            previous_id: draft.previous_id,
            timestamp,
            received_at: meta.received_at,
            raw,
            enrichment: serde_json::to_string(&enrichment).expect("enrichment serializes"),
        }
    }
}

/// Segment's rule: `timestamp = receivedAt - (sentAt - originalTimestamp)`, which cancels the
/// client's clock error. Without `sentAt` the client's timestamp is taken as is; without a
/// timestamp, the time of receipt.
fn corrected_timestamp(draft: &Draft, meta: &RequestMeta) -> (Millis, Option<i64>) {
    match (draft.timestamp, draft.sent_at) {
        (Some(ts), Some(sent)) if !meta.historical => {
            let skew = sent.0 - meta.received_at.0;
            (Millis(ts.0 - skew), Some(skew))
        }
        (Some(ts), _) => (ts, None),
        (None, _) => (meta.received_at, None),
    }
}

/// Drops the host part: the last octet of IPv4, all but the first 48 bits of IPv6.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

fn replace_context_ip(raw: &str, ip: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(raw) else { return raw.to_owned() };
    if let Some(context) = value.get_mut("context").and_then(|c| c.as_object_mut())
        && context.contains_key("ip")
    {
        context.insert("ip".into(), serde_json::Value::String(ip.to_owned()));
        return value.to_string();
    }
    raw.to_owned()
}

fn generate_message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whisperer-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisperer_core::EventType;
    use whisperer_core::time::parse_iso8601;

    fn draft() -> Draft {
        Draft {
            event_type: EventType::Track,
            message_id: Some("m1".into()),
            user_id: Some("u".into()),
            anonymous_id: None,
            previous_id: None,
            name: Some("E".into()),
            timestamp: None,
            sent_at: None,
            user_agent: None,
            ip: None,
            raw: r#"{"type":"track","userId":"u","event":"E","context":{"ip":"203.0.113.77"}}"#.into(),
        }
    }

    fn meta(received: &str) -> RequestMeta {
        RequestMeta { received_at: parse_iso8601(received).unwrap(), remote_ip: None, historical: false }
    }

    fn enrichment(e: &NewEvent) -> serde_json::Value {
        serde_json::from_str(&e.enrichment).unwrap()
    }

    #[test]
    fn corrects_a_fast_client_clock() {
        // The client's clock is 1 hour ahead: it stamped the event 10 s before sending.
        let d = Draft {
            timestamp: Some(parse_iso8601("2024-01-01T13:00:00Z").unwrap()),
            sent_at: Some(parse_iso8601("2024-01-01T13:00:10Z").unwrap()),
            ..draft()
        };
        let e = Enricher::new(None, false).enrich(
            &WorkspaceId::generate(),
            d,
            &meta("2024-01-01T12:00:11Z"),
            &[],
        );
        assert_eq!(e.timestamp, parse_iso8601("2024-01-01T12:00:01Z").unwrap());
        let en = enrichment(&e);
        assert_eq!(en["clockSkewMs"], 3_599_000);
        assert_eq!(en["originalTimestamp"], "2024-01-01T13:00:00.000Z");
        assert_eq!(en["receivedAt"], "2024-01-01T12:00:11.000Z");
    }

    #[test]
    fn historical_and_missing_timestamps() {
        let ts = parse_iso8601("2020-05-05T05:05:05Z").unwrap();
        let d = Draft {
            timestamp: Some(ts),
            sent_at: Some(parse_iso8601("2020-05-05T05:05:06Z").unwrap()),
            ..draft()
        };
        let mut m = meta("2024-01-01T00:00:00Z");
        m.historical = true;
        assert_eq!(Enricher::new(None, false).enrich(&WorkspaceId::generate(), d, &m, &[]).timestamp, ts);
        let e = Enricher::new(None, false).enrich(
            &WorkspaceId::generate(),
            draft(),
            &meta("2024-01-01T00:00:00Z"),
            &[],
        );
        assert_eq!(e.timestamp, parse_iso8601("2024-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn ip_anonymisation_reaches_the_raw_message() {
        let d = Draft { ip: Some("203.0.113.77".into()), ..draft() };
        let e =
            Enricher::new(None, true).enrich(&WorkspaceId::generate(), d, &meta("2024-01-01T00:00:00Z"), &[]);
        assert!(!e.raw.contains("203.0.113.77"), "{}", e.raw);
        assert!(e.raw.contains("203.0.113.0"));
        assert_eq!(enrichment(&e)["ip"], "203.0.113.0");
        assert_eq!(anonymize("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(), "2001:db8:1::");
    }

    #[test]
    fn geo_comes_from_the_full_ip_even_when_it_is_stored_anonymised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        crate::geo::test_mmdb::write_london(&path);
        let geo = GeoIp::open(&path).unwrap();
        let d = Draft { ip: Some("81.2.69.255".into()), ..draft() };
        let e = Enricher::new(Some(geo), true).enrich(
            &WorkspaceId::generate(),
            d,
            &meta("2024-01-01T00:00:00Z"),
            &[],
        );
        let en = enrichment(&e);
        assert_eq!(
            en["geo"],
            serde_json::json!({"country": "GB", "region": "ENG", "city": "London", "timeZone": "Europe/London"})
        );
        assert_eq!(en["ip"], "81.2.69.0");
    }

    #[test]
    fn keeps_raw_and_falls_back_to_the_peer_ip() {
        let mut m = meta("2024-01-01T00:00:00Z");
        m.remote_ip = Some("198.51.100.1".parse().unwrap());
        let d = Draft { message_id: None, user_agent: Some("curl/8.0".into()), ..draft() };
        let raw = d.raw.clone();
        let e = Enricher::new(None, false).enrich(&WorkspaceId::generate(), d, &m, &["bad".into()]);
        assert_eq!(e.raw, raw);
        let en = enrichment(&e);
        assert_eq!(en["ip"], "198.51.100.1");
        assert_eq!(en["userAgent"]["browser"], "curl");
        assert_eq!(en["violations"][0], "bad");
        assert_eq!(en["generatedMessageId"], true);
        assert!(e.message_id.starts_with("whisperer-"));
    }
}
