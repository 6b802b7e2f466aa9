//! User-agent parsing: browser, OS and device type from a `context.userAgent` string.
//!
//! A small hand-written parser for the agents that make up nearly all real traffic (Chromium
//! family, Firefox, Safari, mobile apps, bots). Parsing sits on the ingestion hot path and real
//! traffic repeats a few thousand agents, so results are cached.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What a user agent says about the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAgent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub device_type: DeviceType,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    #[default]
    Desktop,
    Mobile,
    Tablet,
    Tv,
    Bot,
    /// A server-side library or tool (curl, an SDK).
    Server,
}

/// Longest agent string parsed; longer ones are truncated for parsing (and not cached).
const MAX_AGENT_LEN: usize = 512;

/// A parser with a bounded cache shared by all request handlers.
pub struct UserAgentParser {
    cache: RwLock<HashMap<Box<str>, Arc<UserAgent>>>,
    capacity: usize,
}

impl UserAgentParser {
    pub fn new(capacity: usize) -> Self {
        Self { cache: RwLock::new(HashMap::with_capacity(capacity.min(4096))), capacity }
    }

    pub fn parse(&self, agent: &str) -> Arc<UserAgent> {
        if agent.len() > MAX_AGENT_LEN {
            let cut = (0..=MAX_AGENT_LEN).rev().find(|&i| agent.is_char_boundary(i)).unwrap_or(0);
            return Arc::new(parse(&agent[..cut]));
        }
        if let Some(hit) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(agent) {
            return hit.clone();
        }
        let parsed = Arc::new(parse(agent));
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        // Wholesale clearing keeps the bound without per-entry bookkeeping; the working set of
        // real agents refills within a few requests.
        if cache.len() >= self.capacity {
            cache.clear();
        }
        cache.insert(agent.into(), parsed.clone());
        parsed
    }
}

/// The version that follows `token` (e.g. `Chrome/` → `120.0.6099.71`), cut to major.minor.
fn version_after(ua: &str, token: &str) -> Option<String> {
    let start = ua.find(token)? + token.len();
    let rest = &ua[start..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(rest.len());
    let version = rest[..end].replace('_', ".");
    if version.is_empty() {
        return None;
    }
    Some(version.split('.').take(2).collect::<Vec<_>>().join("."))
}

fn parse(ua: &str) -> UserAgent {
    let lower = ua.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);

    if ["bot", "crawler", "spider", "slurp", "headlesschrome", "lighthouse", "facebookexternalhit"]
        .iter()
        .any(|n| has(n))
    {
        let browser = if has("googlebot") {
            Some("Googlebot")
        } else if has("bingbot") {
            Some("Bingbot")
        } else if has("headlesschrome") {
            Some("Headless Chrome")
        } else {
            None
        };
        return UserAgent { browser, device_type: DeviceType::Bot, ..Default::default() };
    }

    let (os, os_version) = if has("windows nt") {
        let nt = version_after(ua, "Windows NT ");
        let version = match nt.as_deref() {
            Some("10.0") => Some("10".to_owned()),
            Some("6.3") => Some("8.1".to_owned()),
            Some("6.2") => Some("8".to_owned()),
            Some("6.1") => Some("7".to_owned()),
            other => other.map(str::to_owned),
        };
        (Some("Windows"), version)
    } else if has("iphone") || has("ipad") || has("ipod") {
        (Some("iOS"), version_after(ua, "OS "))
    } else if has("android") {
        (Some("Android"), version_after(ua, "Android "))
    } else if has("cros") {
        (Some("ChromeOS"), None)
    } else if has("mac os x") || has("macintosh") {
        (Some("macOS"), version_after(ua, "Mac OS X "))
    } else if has("linux") {
        (Some("Linux"), None)
    } else {
        (None, None)
    };

    let (browser, browser_version) = if has("edg/") || has("edga/") || has("edgios/") {
        let v = version_after(ua, "Edg/")
            .or_else(|| version_after(ua, "EdgA/"))
            .or_else(|| version_after(ua, "EdgiOS/"));
        (Some("Edge"), v)
    } else if has("opr/") {
        (Some("Opera"), version_after(ua, "OPR/"))
    } else if has("samsungbrowser/") {
        (Some("Samsung Internet"), version_after(ua, "SamsungBrowser/"))
    } else if has("firefox/") || has("fxios/") {
        (Some("Firefox"), version_after(ua, "Firefox/").or_else(|| version_after(ua, "FxiOS/")))
    } else if has("crios/") {
        (Some("Chrome"), version_after(ua, "CriOS/"))
    } else if has("chrome/") {
        (Some("Chrome"), version_after(ua, "Chrome/"))
    } else if has("safari/") && has("version/") {
        (Some("Safari"), version_after(ua, "Version/"))
    } else if has("msie ") || has("trident/") {
        (Some("Internet Explorer"), version_after(ua, "MSIE ").or_else(|| version_after(ua, "rv:")))
    } else if has("curl/") {
        (Some("curl"), version_after(ua, "curl/"))
    } else {
        (None, None)
    };

    let device_type = if has("smart-tv") || has("smarttv") || has("appletv") || has("googletv") {
        DeviceType::Tv
    } else if has("ipad") || has("tablet") || (has("android") && !has("mobile")) {
        DeviceType::Tablet
    } else if has("mobi") || has("iphone") || has("ipod") {
        DeviceType::Mobile
    } else if os.is_none()
        && (browser == Some("curl") || has("python") || has("node") || has("go-http-client"))
    {
        DeviceType::Server
    } else {
        DeviceType::Desktop
    };

    UserAgent { browser, browser_version, os, os_version, device_type }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: &str, browser: Option<&str>, version: Option<&str>, os: Option<&str>, device: DeviceType) {
        let p = parse(ua);
        assert_eq!(p.browser, browser, "{ua}");
        assert_eq!(p.browser_version.as_deref(), version, "{ua}");
        assert_eq!(p.os, os, "{ua}");
        assert_eq!(p.device_type, device, "{ua}");
    }

    #[test]
    fn real_agents() {
        use DeviceType::*;
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36",
            Some("Chrome"),
            Some("120.0"),
            Some("Windows"),
            Desktop,
        );
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            Some("Safari"),
            Some("17.1"),
            Some("macOS"),
            Desktop,
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
            Some("Safari"),
            Some("17.1"),
            Some("iOS"),
            Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
            Some("Chrome"),
            Some("119.0"),
            Some("Android"),
            Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0 Safari/537.36",
            Some("Chrome"),
            Some("118.0"),
            Some("Android"),
            Tablet,
        );
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            Some("Firefox"),
            Some("121.0"),
            Some("Linux"),
            Desktop,
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
            Some("Edge"),
            Some("120.0"),
            Some("Windows"),
            Desktop,
        );
        check(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
            Some("Chrome"),
            Some("119.0"),
            Some("iOS"),
            Tablet,
        );
        check(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Some("Googlebot"),
            None,
            None,
            Bot,
        );
        check("curl/8.4.0", Some("curl"), Some("8.4"), None, Server);
        check("", None, None, None, Desktop);
    }

    #[test]
    fn cache_is_bounded_and_consistent() {
        let parser = UserAgentParser::new(2);
        let a = parser.parse("curl/1.0");
        assert!(Arc::ptr_eq(&a, &parser.parse("curl/1.0")));
        parser.parse("curl/2.0");
        parser.parse("curl/3.0");
        assert!(parser.cache.read().unwrap().len() <= 2);
        assert_eq!(*parser.parse("curl/1.0"), *a);
        let long = "x".repeat(10_000);
        assert_eq!(parser.parse(&long).browser, None);
    }
}
