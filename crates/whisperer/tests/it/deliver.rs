//! The whole delivery loop through the binary with a real SMTP server (aiosmtpd, installed by
//! `scripts/setup-test-deps`): a template and a campaign over HTTP, a decision that Whisperer
//! delivers, the email as the server received it, its tracking links coming back as events;
//! and a server killed mid-send that, restarted, sends nothing twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

#[path = "../../../channels/tests/support/aiosmtpd.rs"]
mod aiosmtpd;
use aiosmtpd::{Sink, python};

/// A secret-key HTTP client for one server.
struct Api {
    url: String,
    secret: String,
    write: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &ServerProcess, ws: &Workspace) -> Api {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Api { url: server.url.clone(), secret: ws.secret_key.clone(), write: ws.write_key.clone(), http }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(&self.secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    async fn identify(&self, users: &[(String, Value)]) {
        let batch: Vec<Value> = users
            .iter()
            .map(|(id, traits)| json!({"type": "identify", "userId": id, "traits": traits}))
            .collect();
        let res = self
            .http
            .post(format!("{}/v1/batch", self.url))
            .basic_auth(&self.write, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    /// Sets up email through the sink, the gate's postal address, the template and a campaign.
    async fn setup(&self, sink_port: u16) {
        self.ok(
            "PUT",
            "/v1/settings/compliance",
            json!({"postal_address": "Acme GmbH, Hauptstr. 1, 10115 Berlin"}),
        )
        .await;
        let delivery = json!({
            "channels": {"email": {"providers": [{
                "type": "smtp", "host": "127.0.0.1", "port": sink_port, "tls": "none",
                "from": "news@acme.example", "max_connections": 4
            }]}},
            "tracking": {"base_url": self.url},
        });
        self.ok("PUT", "/v1/settings/delivery", delivery).await;
        let template = json!({
            "kind": "marketing",
            "default_locale": "en",
            "locales": {
                "en": {
                    "subject": "We miss you, {{ traits.name }}",
                    "body": "Come back: https://app.example/pricing\nUnsubscribe: {{ unsubscribe_url }}\nAcme GmbH, Hauptstr. 1, 10115 Berlin",
                    "html": "<html><body><p>Hi {{ traits.name }}, see <a href=\"https://app.example/pricing\">our plans</a>.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> · Acme GmbH, Hauptstr. 1, 10115 Berlin</p></body></html>"
                },
                "de": {
                    "subject": "Wir vermissen dich, {{ traits.name }}",
                    "body": "Komm zurück: https://app.example/pricing\nAbmelden: {{ unsubscribe_url }}\nAcme GmbH, Hauptstr. 1, 10115 Berlin"
                }
            }
        });
        let saved = self.ok("PUT", "/v1/templates/win-back", template).await;
        assert_eq!(saved["version"], 1, "{saved}");
        let campaign = json!({
            "id": "nudge", "trigger": {"type": "api"}, "holdout_percent": 0, "defer_in_quiet_hours": false,
            "goal": {"event": "Session Started", "within": "3d"},
            "actions": {"channels": ["email"], "contents": [{"id": "a", "template": "win-back"}]},
        });
        self.ok("PUT", "/v1/campaigns/nudge", campaign).await;
        self.ok("PUT", "/v1/settings/fatigue", json!({"quiet_hours": null, "min_gap_minutes": 0})).await;
    }

    async fn decide(&self, user: &str) -> Value {
        self.ok("POST", "/v1/decide", json!({"userId": user, "campaign": "nudge", "deliver": true})).await
    }
}

/// Header `name` of a raw message (unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?.replace("\r\n ", " ").replace("\r\n\t", " ");
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
}

/// A raw MIME message's text with quoted-printable soft breaks and escapes undone.
fn decoded(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "");
    let mut out = String::with_capacity(joined.len());
    let bytes = joined.as_bytes();
    let mut i = 0;
    let mut buf = Vec::new();
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            buf.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            buf.push(bytes[i]);
            i += 1;
        }
    }
    out.push_str(&String::from_utf8_lossy(&buf));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_becomes_an_email_whose_opens_clicks_and_unsubscribe_come_back() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "deliver");
    let server = ServerProcess::start(dir.path());
    let api = Api::new(&server, &ws);
    api.setup(sink.port).await;
    api.identify(&[
        ("ada".into(), json!({"name": "Ada", "email": "ada@example.com", "locale": "de-AT"})),
        ("bob".into(), json!({"name": "Bob", "email": "bob@example.com"})),
    ])
    .await;

    // A template with a typo is refused at save time, with its position.
    let (status, e) = api
        .call("PUT", "/v1/templates/broken", Some(json!({"locales": {"en": {"subject": "Hi", "body": "Hello {{ traits.name }}\n{{ frist_name }}"}}})))
        .await;
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_template")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("line 2, column 4"), "{e}");
    // The preview renders for a user in their language and says the gate passes.
    let preview = api.ok("POST", "/v1/templates/win-back/preview", json!({"userId": "ada"})).await;
    assert_eq!(preview["subject"], "Wir vermissen dich, Ada", "{preview}");
    assert_eq!(preview["blocked"], false, "{preview}");

    let decision = api.decide("bob").await;
    assert_eq!(decision["status"], "send", "{decision}");
    let id = format!("msg_{}", decision["decision_id"].as_str().unwrap());
    let got = sink.messages(1).await;
    let raw = got[0]["data"].as_str().unwrap();
    assert_eq!(got[0]["rcpt_tos"], json!(["bob@example.com"]));
    assert_eq!(header(raw, "Subject").as_deref(), Some("We miss you, Bob"));
    assert!(header(raw, "Message-ID").unwrap().contains(&id), "{raw}");
    let unsubscribe = header(raw, "List-Unsubscribe").unwrap();
    assert!(unsubscribe.starts_with(&format!("<{}/t/u/", server.url)), "{unsubscribe}");
    assert_eq!(header(raw, "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let body = decoded(raw);
    assert!(!body.contains("href=\"https://app.example/pricing\""), "links go through the redirect: {body}");

    let metrics = api.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            r#"whisperer_delivery_results_total{channel="email",provider="smtp",outcome="sent",reason=""} 1"#
        ),
        "{metrics}"
    );
    let message = api.ok("GET", &format!("/v1/messages/{id}"), Value::Null).await;
    assert_eq!(
        (message["status"].as_str(), message["provider"].as_str()),
        (Some("sent"), Some("smtp")),
        "{message}"
    );

    // The links in the email come back as events for the user.
    let link = |prefix: &str| {
        let start = body
            .find(&format!("{}/t/{prefix}/", server.url))
            .unwrap_or_else(|| panic!("no /t/{prefix}/ in {body}"));
        body[start..].split(['"', '\r', '\n', '>']).next().unwrap().to_owned()
    };
    let pixel = api.http.get(link("o")).send().await.unwrap();
    assert_eq!(pixel.headers()["content-type"], "image/gif");
    let click = api.http.get(link("c")).send().await.unwrap();
    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["location"], "https://app.example/pricing");
    let unsubscribe_url = unsubscribe.trim_start_matches('<').trim_end_matches('>').to_owned();
    let one_click = api.http.post(&unsubscribe_url).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(one_click.status(), 200);
    let forged = api.http.get(format!("{}/t/c/eyJ3IjoieCJ9.AAAA", server.url)).send().await.unwrap();
    assert_eq!(forged.status(), 404);

    let events = api.ok("GET", "/v1/users/bob/events?limit=50", Value::Null).await;
    let names: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for wanted in ["Message Sent", "Message Opened", "Message Clicked", "Unsubscribed"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    // The decision engine learns of the open and click, and the unsubscribe suppresses email.
    let mut decision_record = Value::Null;
    for _ in 0..60 {
        decision_record =
            api.ok("GET", "/v1/decisions?userId=bob", Value::Null).await["decisions"][0].clone();
        if !decision_record["clicked_at"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !decision_record["opened_at"].is_null() && !decision_record["clicked_at"].is_null(),
        "{decision_record}"
    );
    // The learner follows the log every half second: two more ticks and it has surely read the
    // unsubscribe, which came after the click.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = api.decide("bob").await;
    assert_eq!(again["status"], "suppressed", "{again}");
    assert_eq!(sink.received().len(), 1, "nothing more went out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_send_sends_nothing_twice() {
    let Some(python) = python() else { return };
    // Every message takes the sink 40 ms: the kill lands while messages are in flight.
    let sink = Sink::start(&python, &["--delay-ms", "40"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("whisperer.toml");
    std::fs::write(&config, "[delivery]\nlease = \"2s\"\n").unwrap();
    let ws = create_workspace(dir.path(), "crash");
    let data = dir.path().to_str().unwrap();
    let config = config.to_str().unwrap();
    let mut server = ServerProcess::start_on(&["--data-dir", data, "--config", config]);
    let api = Api::new(&server, &ws);
    api.setup(sink.port).await;
    const USERS: usize = 120;
    let users: Vec<(String, Value)> = (0..USERS)
        .map(|i| {
            (format!("u{i}"), json!({"name": format!("User {i}"), "email": format!("u{i}@example.com")}))
        })
        .collect();
    api.identify(&users).await;
    let mut ids = Vec::new();
    for (user, _) in &users {
        let d = api.decide(user).await;
        assert_eq!(d["status"], "send", "{d}");
        ids.push(format!("msg_{}", d["decision_id"].as_str().unwrap()));
    }
    sink.messages(10).await;
    server.kill_hard();
    let at_kill = sink.received().len();
    assert!(at_kill < USERS, "the kill came after everything was sent ({at_kill}); slow the sink down");

    let server = ServerProcess::start_on(&["--data-dir", data, "--config", config]);
    let api = Api::new(&server, &ws);
    // Every message ends sent or dead (claimed when the server died: outcome unknown).
    let mut by_status = std::collections::BTreeMap::new();
    for _ in 0..300 {
        by_status.clear();
        for status in ["queued", "sending", "sent", "failed", "dead"] {
            let page = api.ok("GET", &format!("/v1/messages?status={status}&limit=1000"), Value::Null).await;
            by_status.insert(status, page["messages"].as_array().unwrap().clone());
        }
        if by_status["queued"].is_empty() && by_status["sending"].is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (sent, dead) = (&by_status["sent"], &by_status["dead"]);
    assert!(by_status["failed"].is_empty(), "{:?}", by_status["failed"]);
    assert_eq!(
        sent.len() + dead.len(),
        USERS,
        "queued {:?} sending {:?}",
        by_status["queued"],
        by_status["sending"]
    );
    assert!(dead.iter().all(|m| m["error"]["code"] == "outcome_unknown"), "{dead:?}");
    // Usually a few messages are in flight at the kill (the sink holds each for 40 ms); the
    // kill may also land between two rounds, when none is.

    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = sink.received();
    let mut seen = std::collections::HashSet::new();
    for m in &received {
        let message_id = header(m["data"].as_str().unwrap(), "Message-ID").unwrap();
        assert!(seen.insert(message_id.clone()), "{message_id} arrived twice");
    }
    // Everything recorded as sent arrived; what arrived beyond that is among the dead letters
    // whose outcome the crash hid.
    let arrived = |id: &str| seen.iter().any(|m| m.contains(&format!("<{id}@")));
    assert!(
        sent.iter().all(|m| arrived(m["id"].as_str().unwrap())),
        "a message recorded as sent did not arrive"
    );
    assert!(received.len() <= USERS);
    // The operator re-drives the dead letters that did not arrive, with the CLI while the
    // server runs; each arrives once.
    let listed = run_ok(whisperer().args([
        "messages",
        "list",
        "--status",
        "dead",
        "--workspace",
        &ws.id,
        "--data-dir",
        data,
    ]));
    let listed: Vec<Value> =
        String::from_utf8(listed.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), dead.len());
    let missing: Vec<String> =
        listed.iter().map(|m| m["id"].as_str().unwrap().to_owned()).filter(|id| !arrived(id)).collect();
    if !missing.is_empty() {
        let mut redrive = whisperer();
        redrive.args(["messages", "redrive", "--workspace", &ws.id, "--data-dir", data]).args(&missing);
        let out: Value = serde_json::from_slice(&run_ok(&mut redrive).stdout).unwrap();
        assert_eq!(out["requeued"].as_u64(), Some(missing.len() as u64), "{out}");
        let all = sink.messages(received.len() + missing.len()).await;
        let ids: std::collections::HashSet<String> =
            all.iter().map(|m| header(m["data"].as_str().unwrap(), "Message-ID").unwrap()).collect();
        assert_eq!(ids.len(), all.len(), "a re-driven message arrived twice");
        assert_eq!(all.len(), USERS, "every message arrived in the end");
    }
    eprintln!(
        "crash test: {at_kill} arrived before the kill; in the end {} recorded as sent, {} dead letters \
         (outcome unknown), {} arrived in all, none twice",
        sent.len(),
        dead.len(),
        received.len()
    );
}
