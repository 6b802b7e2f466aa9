//! Tests of every compliance rule through `check`, and of the SMS segment arithmetic.

use super::*;

const UNSUB: &str = "https://acme.test/u?t=abc&r=1";

fn rules(toml_src: &str) -> ComplianceRules {
    toml::from_str(toml_src).unwrap()
}

fn msg<'a>(channel: Channel, body: &'a str) -> OutgoingMessage<'a> {
    OutgoingMessage {
        channel,
        kind: MessageKind::Transactional,
        subject: None,
        body,
        html: None,
        recipient: Recipient {
            email: Some("alice@example.com"),
            phone: Some("+44 7700 900123"),
            name: Some("Alice Martin"),
        },
        others: &[],
        unsubscribe_url: None,
    }
}

fn rules_of(r: &ComplianceRules, m: &OutgoingMessage) -> Vec<(&'static str, &'static str, String)> {
    match check(r, m) {
        Ok(()) => Vec::new(),
        Err(v) => v.0.into_iter().map(|v| (v.rule, v.field, v.offending)).collect(),
    }
}

#[test]
fn clean_message_passes() {
    let r = ComplianceRules::default();
    let m = msg(Channel::Sms, "Hi Alice, your order has shipped.");
    assert_eq!(check(&r, &m), Ok(()));
}

#[test]
fn banned_words_whole_word_case_insensitive() {
    let r = rules(r#"banned_words = ["ass", "free money"]"#);
    let m = msg(Channel::Push, "A classic class act, with an assortment of passes.");
    assert_eq!(check(&r, &m), Ok(()));
    let m = msg(Channel::Push, "Don't be an ASS. Get Free\nMoney!");
    assert_eq!(
        rules_of(&r, &m),
        vec![
            (rule::BANNED_WORD, field::BODY, "ASS".to_string()),
            (rule::BANNED_WORD, field::BODY, "Free\nMoney".to_string()),
        ]
    );
}

#[test]
fn banned_words_unicode_case_folding() {
    let r = rules(r#"banned_words = ["Straße", "ÉLAN"]"#);
    for body in ["STRASSE sperren", "die strasse", "Die STRAẞE", "mit élan"] {
        let m = msg(Channel::Push, body);
        assert!(check(&r, &m).unwrap_err().has(rule::BANNED_WORD), "{body}");
    }
    // Unicode-aware boundaries: "élan" inside a longer word is not a match.
    let m = msg(Channel::Push, "Hauptstraßenbahn, élancé");
    assert_eq!(check(&r, &m), Ok(()));
}

#[test]
fn banned_words_in_subject_and_html_visible_text() {
    let r = rules(r#"banned_words = ["guaranteed", "class"]"#);
    let mut m = msg(Channel::Email, "ok");
    m.subject = Some("Guaranteed results");
    m.html = Some(r#"<p class="x">Results <b>GUARANTEED</b></p>"#);
    assert_eq!(
        rules_of(&r, &m),
        vec![
            (rule::BANNED_WORD, field::SUBJECT, "Guaranteed".to_string()),
            (rule::BANNED_WORD, field::HTML, "GUARANTEED".to_string()),
        ]
    );
}

#[test]
fn banned_patterns_all_matches() {
    let r = rules(r#"banned_patterns = ['(?i)bit\.ly/\w+', '\b\d{3}-\d{2}-\d{4}\b']"#);
    let m = msg(Channel::InApp, "See BIT.LY/abc and bit.ly/def; ssn 123-45-6789");
    let got = rules_of(&r, &m);
    assert_eq!(
        got,
        vec![
            (rule::BANNED_PATTERN, field::BODY, "BIT.LY/abc".to_string()),
            (rule::BANNED_PATTERN, field::BODY, "bit.ly/def".to_string()),
            (rule::BANNED_PATTERN, field::BODY, "123-45-6789".to_string()),
        ]
    );
    let v = check(&r, &m).unwrap_err();
    assert!(v.0[2].detail.contains(r"\d{3}"), "{}", v.0[2].detail);
}

#[test]
fn length_limits_per_channel() {
    let r = rules(
        "[max_length]\npush_title = 10\npush_body = 20\nin_app = 5\nwebhook = 8\nemail_subject = 4\nemail_body = 6\nemail_html = 10",
    );
    let mut m = msg(Channel::Push, "12345678901234567890");
    m.subject = Some("ééééééééé✓"); // 10 chars, more bytes
    assert_eq!(check(&r, &m), Ok(()));
    m.body = "123456789012345678901";
    m.subject = Some("ééééééééé✓x");
    assert_eq!(
        rules_of(&r, &m),
        vec![
            (rule::TOO_LONG, field::SUBJECT, "x".to_string()),
            (rule::TOO_LONG, field::BODY, "1".to_string()),
        ]
    );
    let m = msg(Channel::InApp, "123456");
    assert_eq!(rules_of(&r, &m), vec![(rule::TOO_LONG, field::BODY, "6".to_string())]);
    // Webhook counts bytes: 4 × 'é' = 8 bytes passes, 5 = 10 fails.
    assert_eq!(check(&r, &msg(Channel::Webhook, "éééé")), Ok(()));
    assert!(check(&r, &msg(Channel::Webhook, "ééééé")).unwrap_err().has(rule::TOO_LONG));
    let mut m = msg(Channel::Email, "1234567");
    m.subject = Some("Hello");
    m.html = Some("<p>hi</p>xx");
    let got: Vec<_> = rules_of(&r, &m).into_iter().map(|(r, f, _)| (r, f)).collect();
    assert_eq!(
        got,
        vec![(rule::TOO_LONG, field::SUBJECT), (rule::TOO_LONG, field::BODY), (rule::TOO_LONG, field::HTML)]
    );
}

#[test]
fn too_long_detail_and_display() {
    let r = rules("[max_length]\npush_body = 3");
    let v = check(&r, &msg(Channel::Push, "abcdef")).unwrap_err();
    assert_eq!(v.to_string(), r#"too_long (body): push body is 6 characters, limit 3: "def""#);
}

#[test]
fn sms_segment_limit() {
    let r = rules("[max_length]\nsms_segments = 1");
    assert_eq!(check(&r, &msg(Channel::Sms, &"a".repeat(160))), Ok(()));
    let v = check(&r, &msg(Channel::Sms, &"a".repeat(161))).unwrap_err();
    assert_eq!(v.0.len(), 1);
    assert_eq!(v.0[0].rule, rule::SMS_SEGMENTS);
    assert!(v.0[0].detail.contains("2 segments (161 GSM-7 units), limit 1"), "{}", v.0[0].detail);
    // One emoji turns 100 chars into UCS-2: 101 units -> 2 segments; offending names it.
    let body = format!("{}😀", "a".repeat(99));
    let v = check(&r, &msg(Channel::Sms, &body)).unwrap_err();
    assert_eq!(v.0[0].offending, "😀");
    assert!(v.0[0].detail.contains("UCS-2"), "{}", v.0[0].detail);
    // Default limit is 3 segments: 459 GSM-7 septets ok, 460 not.
    let d = ComplianceRules::default();
    assert_eq!(check(&d, &msg(Channel::Sms, &"a".repeat(459))), Ok(()));
    assert!(check(&d, &msg(Channel::Sms, &"a".repeat(460))).unwrap_err().has(rule::SMS_SEGMENTS));
}

fn marketing<'a>(body: &'a str, html: Option<&'a str>) -> OutgoingMessage<'a> {
    let mut m = msg(Channel::Email, body);
    m.kind = MessageKind::Marketing;
    m.subject = Some("Spring sale");
    m.html = html;
    m.unsubscribe_url = Some(UNSUB);
    m
}

const ADDR_RULES: &str = "postal_address = \"Acme Ltd\\n1 Main St\\nSpringfield, IL 62701\"";

#[test]
fn marketing_email_needs_unsubscribe_and_address() {
    let r = rules(ADDR_RULES);
    let body = format!("Sale! Unsubscribe: {UNSUB}\nAcme Ltd, 1 Main St, Springfield IL 62701");
    assert_eq!(check(&r, &marketing(&body, None)), Ok(()));
    let got = rules_of(&r, &marketing("Sale!", None));
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![rule::MISSING_UNSUBSCRIBE, rule::MISSING_POSTAL_ADDRESS]
    );
    // Transactional email and other channels are exempt.
    let mut m = marketing("Sale!", None);
    m.kind = MessageKind::Transactional;
    assert_eq!(check(&r, &m), Ok(()));
    let mut m = marketing("Sale!", None);
    m.channel = Channel::Push;
    assert_eq!(check(&r, &m), Ok(()));
}

#[test]
fn unsubscribe_and_address_found_in_html() {
    let r = rules(ADDR_RULES);
    // The URL is HTML-escaped in the href; the address is split by <br>.
    let html = r#"<p>Sale</p><a href="https://acme.test/u?t=abc&amp;r=1">Unsubscribe</a>
        <footer>ACME LTD<br/>1 Main St<br>Springfield, IL&nbsp;62701</footer>"#;
    assert_eq!(check(&r, &marketing("Sale", Some(html))), Ok(()));
    // Address only in the subject does not count.
    let mut m = marketing(UNSUB, None);
    m.subject = Some("Acme Ltd 1 Main St Springfield IL 62701");
    assert_eq!(rules_of(&r, &m).iter().map(|g| g.0).collect::<Vec<_>>(), vec![rule::MISSING_POSTAL_ADDRESS]);
}

#[test]
fn missing_address_config_is_a_violation() {
    let r = ComplianceRules::default();
    let v = check(&r, &marketing(UNSUB, None)).unwrap_err();
    assert_eq!(v.0.len(), 1);
    assert_eq!(v.0[0].rule, rule::MISSING_POSTAL_ADDRESS);
    assert!(v.0[0].detail.contains("none is configured"));
}

#[test]
fn unsubscribe_marker() {
    let r = rules(&format!("{ADDR_RULES}\nunsubscribe_marker = \"/unsubscribe/\""));
    let mut m = marketing(
        "Leave: https://mail.acme.test/unsubscribe/xyz Acme Ltd 1 Main St Springfield IL 62701",
        None,
    );
    m.unsubscribe_url = None;
    assert_eq!(check(&r, &m), Ok(()));
    // Marker outside a URL does not count.
    m.body = "Leave via /unsubscribe/ Acme Ltd 1 Main St Springfield IL 62701";
    let v = check(&r, &m).unwrap_err();
    assert_eq!(v.0[0].rule, rule::MISSING_UNSUBSCRIBE);
    assert_eq!(v.0[0].offending, "/unsubscribe/");
    // No URL and no marker: violation.
    let r = rules(ADDR_RULES);
    let v = check(&r, &m).unwrap_err();
    assert!(v.0[0].detail.contains("none supplied"), "{}", v.0[0].detail);
}

#[test]
fn unrendered_template_syntax() {
    let r = ComplianceRules::default();
    let mut m = msg(Channel::Email, "Hi {{ first_name }}, {% if vip %}VIP{% endif %} {# note #} done }}");
    m.subject = Some("Hello {{name");
    let got = rules_of(&r, &m);
    assert_eq!(
        got,
        vec![
            (rule::UNRENDERED_TEMPLATE, field::SUBJECT, "Hello {{name".to_string()),
            (rule::UNRENDERED_TEMPLATE, field::BODY, "{{ first_name }}".to_string()),
            (rule::UNRENDERED_TEMPLATE, field::BODY, "{% if vip %}".to_string()),
            (rule::UNRENDERED_TEMPLATE, field::BODY, "{% endif %}".to_string()),
            (rule::UNRENDERED_TEMPLATE, field::BODY, "{# note #}".to_string()),
            (
                rule::UNRENDERED_TEMPLATE,
                field::BODY,
                "Hi {{ first_name }}, {% if vip %}VIP{% endif %} {# note #} done }}"[26..].to_string()
            ),
        ]
    );
    // Single braces and JSON-ish text are fine.
    assert_eq!(check(&r, &msg(Channel::Webhook, r#"{"a":{"b":1}, "c": "100%"}"#)), Ok(()));
}

#[test]
fn unrendered_template_in_html_ignores_css_nesting() {
    let r = ComplianceRules::default();
    let mut m = msg(Channel::Email, "ok");
    m.html = Some("<style>@media(max-width:600px){#hero{width:100%}}</style><p>ok</p>");
    assert_eq!(check(&r, &m), Ok(()));
    m.html = Some("<style>.x{color:{{ brand }}}</style><p>{{ name }}</p>");
    let got = rules_of(&r, &m);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|g| g.0 == rule::UNRENDERED_TEMPLATE && g.1 == field::HTML));
}

#[test]
fn own_identifiers_are_fine() {
    let r = ComplianceRules::default();
    let m = msg(Channel::Email, "Alice Martin, we'll write to ALICE@example.com or call +44 7700 900123.");
    assert_eq!(check(&r, &m), Ok(()));
}

#[test]
fn other_users_identifiers_flagged() {
    let r = ComplianceRules::default();
    let others = ["bob@example.com", "07700 900456", "Carol Jones", "alice@example.com"];
    let mut m = msg(
        Channel::Email,
        "Hi Alice! Bob (BOB@example.com) and carol JONES say hi; ring 07700-900456. Not jimbob@example.community.",
    );
    m.others = &others;
    let got = rules_of(&r, &m);
    assert_eq!(
        got,
        vec![
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "BOB@example.com".to_string()),
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "jimbob@example.community".to_string()),
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "07700-900456".to_string()),
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "carol JONES".to_string()),
        ]
    );
    let v = check(&r, &m).unwrap_err();
    assert!(v.0[0].detail.contains("another user"));
    assert!(v.0[1].detail.contains("neither the recipient's"));
}

#[test]
fn unknown_contacts_flagged_unless_allowed() {
    let r = rules(r#"allowed_contacts = ["help@acme.test", "@news.acme.test", "+1 555 010 0000"]"#);
    let body = "Reply to help@acme.test, ceo@news.acme.test or +1-555-010-0000. Also dave@evil.test, +33 6 12 34 56 78.";
    let got = rules_of(&r, &msg(Channel::Sms, body));
    assert_eq!(
        got,
        vec![
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "dave@evil.test".to_string()),
            (rule::FOREIGN_PERSONAL_DATA, field::BODY, "+33 6 12 34 56 78".to_string()),
        ]
    );
}

#[test]
fn personal_data_in_html_reported_once_per_field() {
    let r = ComplianceRules::default();
    let mut m = msg(Channel::Email, "ok");
    m.html = Some(r#"<a href="mailto:eve@x.test">eve@x.test</a>"#);
    assert_eq!(rules_of(&r, &m), vec![(rule::FOREIGN_PERSONAL_DATA, field::HTML, "eve@x.test".to_string())]);
}

#[test]
fn collects_all_violations_and_displays_each() {
    let r = rules(&format!("{ADDR_RULES}\nbanned_words = [\"cheap\"]\n[max_length]\nemail_subject = 5"));
    let mut m = marketing("Cheap {{ x }} from mallory@evil.test", None);
    m.subject = Some("Cheap deals");
    let v = check(&r, &m).unwrap_err();
    let ids: Vec<_> = v.0.iter().map(|v| v.rule).collect();
    assert_eq!(
        ids,
        vec![
            rule::BANNED_WORD,
            rule::BANNED_WORD,
            rule::TOO_LONG,
            rule::MISSING_UNSUBSCRIBE,
            rule::MISSING_POSTAL_ADDRESS,
            rule::UNRENDERED_TEMPLATE,
            rule::FOREIGN_PERSONAL_DATA,
        ]
    );
    let text = v.to_string();
    assert_eq!(text.lines().count(), 7);
    assert!(text.starts_with(r#"banned_word (subject): banned word "cheap": "Cheap""#), "{text}");
    assert!(
        text.contains(r#"unrendered_template (body): unrendered template syntax "{{": "{{ x }}""#),
        "{text}"
    );
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json[0]["rule"], "banned_word");
}

#[test]
fn long_excerpts_are_capped() {
    let r = rules(r#"banned_patterns = ['x+']"#);
    let body = "x".repeat(100);
    let v = check(&r, &msg(Channel::Webhook, &body)).unwrap_err();
    assert_eq!(v.0[0].offending.chars().count(), 40);
}

#[test]
fn others_sharing_the_recipients_name_are_not_flagged() {
    let r = ComplianceRules::default();
    let others = ["Alice", "Martin", "Alice Smith", "+44 7700 900123", "ALICE@EXAMPLE.COM"];
    let mut m = msg(Channel::InApp, "Alice Martin: Alice, Martin. Also Alice Smith.");
    m.others = &others;
    assert_eq!(rules_of(&r, &m), vec![(rule::FOREIGN_PERSONAL_DATA, field::BODY, "Alice Smith".to_string())]);
}

#[test]
fn violation_display_format() {
    let v = Violation {
        rule: rule::BANNED_WORD,
        field: field::SUBJECT,
        offending: "say \"hi\"".into(),
        detail: "banned word \"hi\"".into(),
    };
    assert_eq!(v.to_string(), r#"banned_word (subject): banned word "hi": "say \"hi\"""#);
    assert_eq!(Violations(vec![v.clone(), v]).to_string().lines().count(), 2);
}
