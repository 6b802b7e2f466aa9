//! Who the simulated users are: countries and time zones, plans, company sizes, acquisition
//! channels, devices, names, and the static hidden traits (product fit, baseline satisfaction,
//! price sensitivity, channel affinities) drawn from them.
//!
//! Every table string is written into JSON unescaped, so none may contain `"`, `\` or control
//! characters (a test checks).

use chrono_tz::Tz;

use crate::rng::{Rng, Stream, hash};

/// A country with one of its IANA time zones, a locale and a weight in the population.
pub(crate) struct Zone {
    pub country: &'static str,
    pub tz: Tz,
    pub locale: &'static str,
    pub weight: u32,
}

const fn zone(country: &'static str, tz: Tz, locale: &'static str, weight: u32) -> Zone {
    Zone { country, tz, locale, weight }
}

use chrono_tz::{Africa, America, Asia, Australia, Europe, Pacific};

pub(crate) const ZONES: &[Zone] = &[
    zone("US", America::New_York, "en-US", 14),
    zone("US", America::Chicago, "en-US", 8),
    zone("US", America::Denver, "en-US", 3),
    zone("US", America::Los_Angeles, "en-US", 9),
    zone("CA", America::Toronto, "en-CA", 3),
    zone("BR", America::Sao_Paulo, "pt-BR", 4),
    zone("MX", America::Mexico_City, "es-MX", 2),
    zone("AR", America::Argentina::Buenos_Aires, "es-AR", 1),
    zone("GB", Europe::London, "en-GB", 8),
    zone("IE", Europe::Dublin, "en-IE", 1),
    zone("DE", Europe::Berlin, "de-DE", 7),
    zone("FR", Europe::Paris, "fr-FR", 5),
    zone("ES", Europe::Madrid, "es-ES", 3),
    zone("IT", Europe::Rome, "it-IT", 2),
    zone("NL", Europe::Amsterdam, "nl-NL", 2),
    zone("SE", Europe::Stockholm, "sv-SE", 1),
    zone("PL", Europe::Warsaw, "pl-PL", 2),
    zone("IN", Asia::Kolkata, "en-IN", 7),
    zone("JP", Asia::Tokyo, "ja-JP", 3),
    zone("KR", Asia::Seoul, "ko-KR", 1),
    zone("SG", Asia::Singapore, "en-SG", 1),
    zone("ID", Asia::Jakarta, "id-ID", 1),
    zone("AE", Asia::Dubai, "en-AE", 1),
    zone("AU", Australia::Sydney, "en-AU", 3),
    zone("NZ", Pacific::Auckland, "en-NZ", 1),
    zone("ZA", Africa::Johannesburg, "en-ZA", 1),
    zone("NG", Africa::Lagos, "en-NG", 1),
];

/// A browser or app user agent and what it says about the device.
pub(crate) struct Agent {
    pub ua: &'static str,
    pub platform: &'static str,
    pub mobile: bool,
    pub weight: u32,
}

pub(crate) const AGENTS: &[Agent] = &[
    Agent {
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        platform: "web",
        mobile: false,
        weight: 30,
    },
    Agent {
        ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        platform: "web",
        mobile: false,
        weight: 22,
    },
    Agent {
        ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        platform: "web",
        mobile: false,
        weight: 12,
    },
    Agent {
        ua: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        platform: "web",
        mobile: false,
        weight: 6,
    },
    Agent {
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        platform: "web",
        mobile: false,
        weight: 8,
    },
    Agent {
        ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        platform: "ios",
        mobile: true,
        weight: 12,
    },
    Agent {
        ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        platform: "android",
        mobile: true,
        weight: 10,
    },
];

/// Plans, cheapest first, with their monthly price in cents.
pub(crate) const PLANS: &[(&str, u32)] =
    &[("free", 0), ("starter", 1900), ("pro", 4900), ("enterprise", 29900)];
pub(crate) const ENTERPRISE: u8 = 3;

/// Company sizes with their share of sign-ups and how much a user invites colleagues.
pub(crate) const COMPANY_SIZES: &[(&str, u32, f64)] =
    &[("1-10", 35, 0.3), ("11-50", 30, 0.8), ("51-200", 20, 1.2), ("201-1000", 10, 1.5), ("1001+", 5, 1.8)];

/// Acquisition channels with their share, product fit multiplier and satisfaction shift.
pub(crate) const ACQUISITION: &[(&str, u32, f64, f64)] = &[
    ("organic", 30, 1.0, 0.0),
    ("paid_search", 20, 0.8, -0.05),
    ("paid_social", 15, 0.7, -0.08),
    ("referral", 15, 1.3, 0.06),
    ("content", 12, 1.05, 0.02),
    ("partner", 8, 1.15, 0.03),
];

/// First names as written, and as used in an email address.
pub(crate) const FIRST_NAMES: &[(&str, &str)] = &[
    ("Ada", "ada"),
    ("Alan", "alan"),
    ("Grace", "grace"),
    ("Linus", "linus"),
    ("Margaret", "margaret"),
    ("Dennis", "dennis"),
    ("Barbara", "barbara"),
    ("Ken", "ken"),
    ("Frances", "frances"),
    ("Edsger", "edsger"),
    ("Radia", "radia"),
    ("Tim", "tim"),
    ("Hedy", "hedy"),
    ("John", "john"),
    ("Katherine", "katherine"),
    ("Guido", "guido"),
    ("Sophie", "sophie"),
    ("Bjarne", "bjarne"),
    ("Anita", "anita"),
    ("Yukihiro", "yukihiro"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Chloé", "chloe"),
    ("Søren", "soren"),
    ("Priya", "priya"),
    ("Wei", "wei"),
    ("Amara", "amara"),
    ("Mateo", "mateo"),
    ("Aiko", "aiko"),
    ("Olu", "olu"),
    ("Ingrid", "ingrid"),
    ("Rafael", "rafael"),
];

pub(crate) const LAST_NAMES: &[(&str, &str)] = &[
    ("Lovelace", "lovelace"),
    ("Turing", "turing"),
    ("Hopper", "hopper"),
    ("Torvalds", "torvalds"),
    ("Hamilton", "hamilton"),
    ("Ritchie", "ritchie"),
    ("Liskov", "liskov"),
    ("Thompson", "thompson"),
    ("Allen", "allen"),
    ("Dijkstra", "dijkstra"),
    ("Perlman", "perlman"),
    ("Berners-Lee", "berners-lee"),
    ("Lamarr", "lamarr"),
    ("McCarthy", "mccarthy"),
    ("Johnson", "johnson"),
    ("van Rossum", "vanrossum"),
    ("Wilson", "wilson"),
    ("Stroustrup", "stroustrup"),
    ("Borg", "borg"),
    ("Matsumoto", "matsumoto"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("Dubois", "dubois"),
    ("Kierkegaard", "kierkegaard"),
    ("Sharma", "sharma"),
    ("Zhang", "zhang"),
    ("Okafor", "okafor"),
    ("Rossi", "rossi"),
    ("Tanaka", "tanaka"),
    ("Adeyemi", "adeyemi"),
    ("Nilsson", "nilsson"),
    ("Silva", "silva"),
];

pub(crate) const COMPANY_SUFFIXES: &[&str] =
    &["Labs", "Inc", "GmbH", "Studio", "Systems", "Group", "Ltd", "Co"];

/// Product features, in the order a typical user finds them (bit i of `User::features`).
pub(crate) const FEATURES: &[&str] = &[
    "dashboard",
    "projects",
    "reports",
    "search",
    "comments",
    "export",
    "alerts",
    "templates",
    "integrations",
    "automations",
    "api",
    "analytics",
];

/// Pages of the marketing site, seen by anonymous visitors.
pub(crate) const SITE_PAGES: &[(&str, &str)] = &[
    ("Home", "/"),
    ("Pricing", "/pricing"),
    ("Features", "/features"),
    ("Docs", "/docs"),
    ("Blog", "/blog"),
    ("Customers", "/customers"),
    ("Sign Up", "/signup"),
];

/// Pages of the app, seen in sessions. `Billing` and `Help` are over-represented by
/// dissatisfied users (see `User::session_event`).
pub(crate) const APP_PAGES: &[(&str, &str)] = &[
    ("Dashboard", "/app"),
    ("Projects", "/app/projects"),
    ("Reports", "/app/reports"),
    ("Settings", "/app/settings"),
    ("Team", "/app/team"),
    ("Integrations", "/app/integrations"),
    ("Billing", "/app/billing"),
    ("Help", "/app/help"),
];

pub(crate) const TICKET_TOPICS: &[&str] = &["bug", "how_to", "billing", "performance", "feature_request"];
pub(crate) const PRIORITIES: &[&str] = &["low", "normal", "high"];
pub(crate) const ROLES: &[&str] = &["viewer", "editor", "admin"];
pub(crate) const PAYMENT_REASONS: &[&str] = &["card_declined", "insufficient_funds", "expired_card"];

/// The static part of a user, drawn once from the traits stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traits {
    pub zone: u8,
    pub agent: u8,
    pub company: u8,
    pub acquisition: u8,
    pub plan: u8,
    /// Shifts the user's daily rhythm by this many hours (early birds, night owls).
    pub peak_shift: i8,
    /// How much the product is worth to this user; multiplies the session rate. Median ~1.
    pub fit: f32,
    /// Where satisfaction returns to when nothing happens.
    pub satisfaction_base: f32,
    /// How much a price matters to this user, 0..1.
    pub price_sensitivity: f32,
    /// Affinity to email, sms, push, in_app, webhook (0..255 for 0..1).
    pub affinity: [u8; 5],
}

impl Traits {
    pub(crate) fn draw(seed: u64, index: u32) -> Self {
        let mut r = Rng::new(seed, Stream::Traits, u64::from(index), 0);
        let zone = r.weighted(&ZONES.iter().map(|z| z.weight).collect::<Vec<_>>()) as u8;
        let agent = r.weighted(&AGENTS.iter().map(|a| a.weight).collect::<Vec<_>>()) as u8;
        let company = r.weighted(&COMPANY_SIZES.iter().map(|c| c.1).collect::<Vec<_>>()) as u8;
        let acquisition = r.weighted(&ACQUISITION.iter().map(|a| a.1).collect::<Vec<_>>()) as u8;
        // Bigger companies start on bigger plans.
        let plan_weights: [u32; 4] = match company {
            0 => [75, 20, 5, 0],
            1 => [62, 25, 12, 1],
            2 => [50, 25, 20, 5],
            3 => [40, 20, 28, 12],
            _ => [30, 15, 30, 25],
        };
        let plan = r.weighted(&plan_weights) as u8;
        let peak_shift = (r.normal() * 1.2).round().clamp(-3.0, 3.0) as i8;
        let (_, _, fit_mult, sat_shift) = ACQUISITION[acquisition as usize];
        // Log-normal product fit: most users are lukewarm, a few love it.
        let fit = (fit_mult * (0.55 * r.normal() - 0.1).exp()).clamp(0.1, 5.0) as f32;
        let satisfaction_base = (0.6 + sat_shift + 0.12 * r.normal()).clamp(0.15, 0.95) as f32;
        let price_sensitivity = (0.75 - 0.13 * f64::from(company) + 0.18 * r.normal() - 0.1 * f64::from(plan))
            .clamp(0.0, 1.0) as f32;
        let mobile = AGENTS[agent as usize].mobile;
        let unit = |x: f64| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
        let affinity = [
            unit(0.55 + 0.15 * r.normal()),
            unit(0.3 + 0.15 * r.normal()),
            unit(if mobile { 0.65 } else { 0.25 } + 0.15 * r.normal()),
            unit(0.7 + 0.1 * r.normal()),
            // A webhook reaches the customer's success team, who exist for bigger accounts.
            unit(0.12 + 0.15 * f64::from(company) + 0.1 * r.normal()),
        ];
        Self {
            zone,
            agent,
            company,
            acquisition,
            plan,
            peak_shift,
            fit,
            satisfaction_base,
            price_sensitivity,
            affinity,
        }
    }
}

/// The user's name, as (display first, display last, email first, email last): a pure function
/// of seed and index, so it needs no storage.
pub(crate) fn name_parts(seed: u64, index: u32) -> (&'static str, &'static str, &'static str, &'static str) {
    let h = hash(seed, Stream::Traits, u64::from(index), 1);
    let (first, first_slug) = FIRST_NAMES[(h % FIRST_NAMES.len() as u64) as usize];
    let (last, last_slug) = LAST_NAMES[((h >> 20) % LAST_NAMES.len() as u64) as usize];
    (first, last, first_slug, last_slug)
}

/// The user's company name, e.g. "Turing Labs".
pub(crate) fn company_parts(seed: u64, index: u32) -> (&'static str, &'static str) {
    let h = hash(seed, Stream::Traits, u64::from(index), 2);
    let (last, _) = LAST_NAMES[(h % LAST_NAMES.len() as u64) as usize];
    (last, COMPANY_SUFFIXES[((h >> 24) % COMPANY_SUFFIXES.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_safe(s: &str) -> bool {
        !s.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    }

    #[test]
    fn table_strings_need_no_json_escaping() {
        let mut all: Vec<&str> = Vec::new();
        all.extend(ZONES.iter().flat_map(|z| [z.country, z.tz.name(), z.locale]));
        all.extend(AGENTS.iter().flat_map(|a| [a.ua, a.platform]));
        all.extend(PLANS.iter().map(|p| p.0));
        all.extend(COMPANY_SIZES.iter().map(|c| c.0));
        all.extend(ACQUISITION.iter().map(|a| a.0));
        all.extend(FIRST_NAMES.iter().chain(LAST_NAMES).flat_map(|n| [n.0, n.1]));
        all.extend(COMPANY_SUFFIXES.iter().chain(FEATURES).chain(TICKET_TOPICS).chain(PRIORITIES));
        all.extend(ROLES.iter().chain(PAYMENT_REASONS));
        all.extend(SITE_PAGES.iter().chain(APP_PAGES).flat_map(|p| [p.0, p.1]));
        for s in all {
            assert!(json_safe(s), "{s:?}");
        }
        for (_, slug) in FIRST_NAMES.iter().chain(LAST_NAMES) {
            assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{slug}");
        }
        assert!(FEATURES.len() <= 16, "features are a u16 bit set");
    }

    #[test]
    fn traits_are_a_function_of_seed_and_index() {
        let a = Traits::draw(5, 42);
        let b = Traits::draw(5, 42);
        assert_eq!((a.zone, a.agent, a.plan, a.fit), (b.zone, b.agent, b.plan, b.fit));
        let spread: std::collections::HashSet<u8> = (0..500).map(|i| Traits::draw(5, i).zone).collect();
        assert!(spread.len() > 15, "zones drawn: {}", spread.len());
    }
}
