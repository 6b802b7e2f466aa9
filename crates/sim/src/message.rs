//! Segment messages as the simulator emits them: a small borrowed view of one user's transition
//! that writes its JSON directly (no intermediate `serde_json::Value`, so a million users stay
//! fast), with accessors for callers that only need the ids, name or time.

use whisperer_core::time::civil_from_days;
use whisperer_core::{EventType, Millis, NewEvent, StoredEvent, WorkspaceId};

use crate::clock::DAY_MS;
use crate::model::{SessionEvent, User};
use crate::population::{
    ACQUISITION, AGENTS, APP_PAGES, COMPANY_SIZES, FEATURES, PAYMENT_REASONS, PLANS, PRIORITIES, ROLES,
    SITE_PAGES, TICKET_TOPICS, ZONES, company_parts, name_parts,
};
use crate::rng::{Stream, hash};

/// The Segment message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Identify,
    Track,
    Page,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Identify => "identify",
            MessageKind::Track => "track",
            MessageKind::Page => "page",
        }
    }
}

/// Track event names the simulator emits, in `Stats` order.
pub const EVENT_NAMES: [&str; 7] = [
    "Session Started",
    "Feature Used",
    "Project Created",
    "Invite Sent",
    "Plan Upgraded",
    "Payment Failed",
    "Support Ticket Opened",
];

/// What a message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// `signup`: the first identify with every trait; otherwise a plan change.
    Identify {
        signup: bool,
    },
    /// A page of the marketing site, before sign-up (anonymous).
    SitePage(u8),
    SessionStarted,
    Session(SessionEvent),
}

impl Body {
    pub(crate) fn kind(&self) -> MessageKind {
        match self {
            Body::Identify { .. } => MessageKind::Identify,
            Body::SitePage(_) | Body::Session(SessionEvent::Page(_)) => MessageKind::Page,
            _ => MessageKind::Track,
        }
    }

    /// Index into `EVENT_NAMES` for track messages.
    pub(crate) fn event_index(&self) -> Option<usize> {
        Some(match self {
            Body::SessionStarted => 0,
            Body::Session(e) => match e {
                SessionEvent::Page(_) => return None,
                SessionEvent::Feature(_) => 1,
                SessionEvent::ProjectCreated => 2,
                SessionEvent::InviteSent(_) => 3,
                SessionEvent::PlanUpgraded { .. } => 4,
                SessionEvent::PaymentFailed { .. } => 5,
                SessionEvent::SupportTicket { .. } => 6,
            },
            _ => return None,
        })
    }
}

/// One Segment message (identify, track or page) of one simulated user.
///
/// Borrowed from the simulation for the duration of the `advance_to` callback; turn it into
/// bytes with [`Message::write_json`] (fastest), [`Message::to_json`] or
/// [`Message::to_value`].
#[derive(Clone, Copy)]
pub struct Message<'a> {
    pub(crate) seed: u64,
    pub(crate) index: u32,
    pub(crate) user: &'a User,
    pub(crate) timestamp: i64,
    pub(crate) seq: u32,
    pub(crate) body: Body,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// The user id of the user at `index` (`user-000042`).
pub fn user_id_of(index: u32) -> String {
    format!("user-{index:06}")
}

/// The index of a user id made by [`user_id_of`].
pub fn index_of_user_id(user_id: &str) -> Option<u32> {
    let digits = user_id.strip_prefix("user-")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    // Only the canonical spelling: `user-0000042` is another id.
    (user_id_of(index) == user_id).then_some(index)
}

impl Message<'_> {
    pub fn kind(&self) -> MessageKind {
        self.body.kind()
    }

    pub fn timestamp(&self) -> Millis {
        Millis(self.timestamp)
    }

    /// The track event name or page name; None for identify.
    pub fn name(&self) -> Option<&'static str> {
        match self.body {
            Body::Identify { .. } => None,
            Body::SitePage(p) => Some(SITE_PAGES[p as usize].0),
            Body::Session(SessionEvent::Page(p)) => Some(APP_PAGES[p as usize].0),
            body => body.event_index().map(|i| EVENT_NAMES[i]),
        }
    }

    /// Index of the user in the simulation (0-based).
    pub fn user_index(&self) -> u32 {
        self.index
    }

    /// None for the anonymous page views before sign-up.
    pub fn user_id(&self) -> Option<String> {
        (!matches!(self.body, Body::SitePage(_))).then(|| user_id_of(self.index))
    }

    pub fn anonymous_id(&self) -> String {
        let mut out = Vec::with_capacity(21);
        push_anonymous_id(&mut out, self.seed, self.index);
        String::from_utf8(out).expect("ascii")
    }

    /// `sim-<seed hex>-<user index>-<n>`: the same for the same seed and config, unique per message.
    pub fn message_id(&self) -> String {
        let mut out = Vec::with_capacity(32);
        push_message_id(&mut out, self.seed, self.index, self.seq);
        String::from_utf8(out).expect("ascii")
    }

    /// The message as the store would give it back after ingestion, with the simulated user's
    /// index as its person (a store resolves the anonymous visit and the signed-in user to one
    /// person, as here): for feeding engines in process, without a server.
    pub fn to_stored_event(&self, workspace: &WorkspaceId, seq: i64) -> StoredEvent {
        let event_type = match self.kind() {
            MessageKind::Identify => EventType::Identify,
            MessageKind::Track => EventType::Track,
            MessageKind::Page => EventType::Page,
        };
        StoredEvent {
            seq,
            person_id: i64::from(self.index),
            event: NewEvent {
                workspace_id: workspace.clone(),
                message_id: self.message_id(),
                event_type,
                name: self.name().map(str::to_owned),
                user_id: self.user_id(),
                anonymous_id: Some(self.anonymous_id()),
                previous_id: None,
                timestamp: self.timestamp(),
                received_at: self.timestamp(),
                raw: self.to_json(),
                enrichment: "{}".into(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        String::from_utf8(out).expect("messages are UTF-8")
    }

    pub fn to_value(&self) -> serde_json::Value {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        serde_json::from_slice(&out).expect("messages are valid JSON")
    }

    /// Appends the message as one line of JSON (without the newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let user = self.user;
        let zone = &ZONES[user.traits.zone as usize];
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(self.kind().as_str().as_bytes());
        out.extend_from_slice(b"\",\"messageId\":\"");
        push_message_id(out, self.seed, self.index, self.seq);
        out.extend_from_slice(b"\",\"anonymousId\":\"");
        push_anonymous_id(out, self.seed, self.index);
        if !matches!(self.body, Body::SitePage(_)) {
            out.extend_from_slice(b"\",\"userId\":\"user-");
            push_padded(out, u64::from(self.index), 6);
        }
        out.push(b'"');
        match self.body {
            Body::Identify { signup } => {
                out.extend_from_slice(b",\"traits\":{");
                if signup {
                    self.write_signup_traits(out);
                } else {
                    out.extend_from_slice(b"\"plan\":\"");
                    out.extend_from_slice(PLANS[user.plan as usize].0.as_bytes());
                    out.push(b'"');
                }
                out.push(b'}');
            }
            Body::SitePage(p) => {
                let (name, path) = SITE_PAGES[p as usize];
                push_page(out, name, "https://www.example.com", path);
            }
            Body::Session(SessionEvent::Page(p)) => {
                let (name, path) = APP_PAGES[p as usize];
                push_page(out, name, "https://app.example.com", path);
            }
            body => {
                let name = EVENT_NAMES[body.event_index().expect("a track event")];
                out.extend_from_slice(b",\"event\":\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\",\"properties\":{");
                self.write_properties(out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"timestamp\":\"");
        push_timestamp(out, self.timestamp);
        out.extend_from_slice(b"\",\"context\":{\"timezone\":\"");
        out.extend_from_slice(zone.tz.name().as_bytes());
        out.extend_from_slice(b"\",\"locale\":\"");
        out.extend_from_slice(zone.locale.as_bytes());
        out.extend_from_slice(b"\",\"userAgent\":\"");
        out.extend_from_slice(AGENTS[user.traits.agent as usize].ua.as_bytes());
        out.extend_from_slice(b"\"}}");
    }

    fn write_signup_traits(&self, out: &mut Vec<u8>) {
        let user = self.user;
        let t = &user.traits;
        let (first, last, first_slug, last_slug) = name_parts(self.seed, self.index);
        let (company, suffix) = company_parts(self.seed, self.index);
        let zone = &ZONES[t.zone as usize];
        let field = |out: &mut Vec<u8>, key: &str, parts: &[&str]| {
            out.extend_from_slice(b"\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":\"");
            for p in parts {
                out.extend_from_slice(p.as_bytes());
            }
            out.extend_from_slice(b"\",");
        };
        let mut email = Vec::with_capacity(48);
        email.extend_from_slice(first_slug.as_bytes());
        email.push(b'.');
        email.extend_from_slice(last_slug.as_bytes());
        email.push(b'.');
        push_u64(&mut email, u64::from(self.index));
        email.extend_from_slice(b"@example.com");
        field(out, "email", &[std::str::from_utf8(&email).expect("ascii")]);
        field(out, "name", &[first, " ", last]);
        field(out, "firstName", &[first]);
        field(out, "lastName", &[last]);
        field(out, "plan", &[PLANS[user.plan as usize].0]);
        field(out, "company", &[company, " ", suffix]);
        field(out, "company_size", &[COMPANY_SIZES[t.company as usize].0]);
        field(out, "country", &[zone.country]);
        field(out, "timezone", &[zone.tz.name()]);
        field(out, "acquisition_channel", &[ACQUISITION[t.acquisition as usize].0]);
        out.extend_from_slice(b"\"createdAt\":\"");
        push_timestamp(out, user.signup_at);
        out.push(b'"');
    }

    fn write_properties(&self, out: &mut Vec<u8>) {
        let str_prop = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(value.as_bytes());
            out.push(b'"');
        };
        let money = |out: &mut Vec<u8>, key: &str, cents: u32| {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            push_u64(out, u64::from(cents / 100));
            out.push(b'.');
            push_padded(out, u64::from(cents % 100), 2);
            out.extend_from_slice(b",\"currency\":\"USD\"");
        };
        match self.body {
            Body::SessionStarted => {
                str_prop(out, "platform", AGENTS[self.user.traits.agent as usize].platform);
            }
            Body::Session(SessionEvent::Feature(f)) => str_prop(out, "feature", FEATURES[f as usize]),
            Body::Session(SessionEvent::ProjectCreated) => {
                out.extend_from_slice(b"\"project_id\":\"p-");
                push_u64(out, u64::from(self.index));
                out.push(b'-');
                push_u64(out, u64::from(self.seq));
                out.extend_from_slice(b"\",\"projects\":");
                push_u64(out, u64::from(self.user.projects));
            }
            Body::Session(SessionEvent::InviteSent(role)) => str_prop(out, "role", ROLES[role as usize]),
            Body::Session(SessionEvent::PlanUpgraded { plan, cents }) => {
                str_prop(out, "plan", PLANS[plan as usize].0);
                out.push(b',');
                money(out, "revenue", cents);
            }
            Body::Session(SessionEvent::PaymentFailed { cents, reason }) => {
                str_prop(out, "plan", PLANS[self.user.plan as usize].0);
                out.push(b',');
                str_prop(out, "reason", PAYMENT_REASONS[reason as usize]);
                out.push(b',');
                money(out, "amount", cents);
            }
            Body::Session(SessionEvent::SupportTicket { topic, priority }) => {
                str_prop(out, "topic", TICKET_TOPICS[topic as usize]);
                out.push(b',');
                str_prop(out, "priority", PRIORITIES[priority as usize]);
            }
            Body::Identify { .. } | Body::SitePage(_) | Body::Session(SessionEvent::Page(_)) => {}
        }
    }
}

fn push_page(out: &mut Vec<u8>, name: &str, origin: &str, path: &str) {
    out.extend_from_slice(b",\"name\":\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",\"properties\":{\"path\":\"");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b"\",\"url\":\"");
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b"\",\"title\":\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" | Example\"}");
}

fn push_message_id(out: &mut Vec<u8>, seed: u64, index: u32, seq: u32) {
    out.extend_from_slice(b"sim-");
    push_hex(out, seed, 1);
    out.push(b'-');
    push_u64(out, u64::from(index));
    out.push(b'-');
    push_u64(out, u64::from(seq));
}

fn push_anonymous_id(out: &mut Vec<u8>, seed: u64, index: u32) {
    out.extend_from_slice(b"anon-");
    push_hex(out, hash(seed, Stream::Anonymous, u64::from(index), 0), 16);
}

pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    push_padded(out, n, 1);
}

/// Decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = i.min(buf.len() - width.max(1));
    out.extend_from_slice(&buf[start..]);
}

/// Lowercase hex, zero-padded to at least `width` digits.
fn push_hex(out: &mut Vec<u8>, n: u64, width: usize) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(width as u32) as usize;
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
    }
}

/// `2024-01-02T03:04:05.678Z`, the same text as `Millis::to_rfc3339`, without chrono's
/// formatting machinery (it is the hottest part of writing a message).
pub(crate) fn push_timestamp(out: &mut Vec<u8>, ms: i64) {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    push_padded(out, y as u64, 4);
    out.push(b'-');
    push_padded(out, u64::from(m), 2);
    out.push(b'-');
    push_padded(out, u64::from(d), 2);
    out.push(b'T');
    push_padded(out, (in_day / 3_600_000) as u64, 2);
    out.push(b':');
    push_padded(out, (in_day / 60_000 % 60) as u64, 2);
    out.push(b':');
    push_padded(out, (in_day / 1000 % 60) as u64, 2);
    out.push(b'.');
    push_padded(out, (in_day % 1000) as u64, 3);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chrono() {
        let mut t = 0i64;
        // Every ~37 hours and a few ms over ~500 years: leap years, centuries, month ends.
        while t < 16_000_000_000_000 {
            let mut out = Vec::new();
            push_timestamp(&mut out, t);
            assert_eq!(String::from_utf8(out).unwrap(), Millis(t).to_rfc3339(), "{t}");
            t += 133_200_007;
        }
    }

    #[test]
    fn numbers_and_ids() {
        let mut out = Vec::new();
        push_padded(&mut out, 0, 1);
        out.push(b' ');
        push_padded(&mut out, 42, 6);
        out.push(b' ');
        push_padded(&mut out, 1_234_567, 6);
        out.push(b' ');
        push_hex(&mut out, 0xab, 1);
        out.push(b' ');
        push_hex(&mut out, 0, 1);
        assert_eq!(String::from_utf8(out).unwrap(), "0 000042 1234567 ab 0");
        assert_eq!(user_id_of(42), "user-000042");
        assert_eq!(index_of_user_id("user-000042"), Some(42));
        assert_eq!(index_of_user_id("user-1234567"), Some(1_234_567));
        assert_eq!(index_of_user_id("user-42"), None);
        assert_eq!(index_of_user_id("user-0000042"), None);
        assert_eq!(index_of_user_id("ada"), None);
    }
}
