//! Templates through the public API: compile and save-time errors with positions, strict
//! rendering, locale fallback, escaping and the message filters.

use serde_json::json;
use whisperer_templates::*;

fn schema() -> Schema {
    Schema::messages(&["sessions_7d", "last_order_at"])
}

fn err(src: &str) -> TemplateError {
    Template::compile("t.txt", src).expect_err(src)
}

fn pos(e: &TemplateError) -> (usize, usize) {
    (e.line, e.column)
}

#[test]
fn syntax_errors_have_line_and_column() {
    let e = err("{{ a + }}");
    assert_eq!(pos(&e), (1, 8));
    assert!(e.message.starts_with("syntax error"), "{e}");
    assert_eq!(e.to_string(), format!("1:8: {}", e.message));

    assert_eq!(pos(&err("Hi\nthere {{ a b }}")), (2, 12));
    assert_eq!(pos(&err("x\n  {% for %}")), (2, 10));
    assert_eq!(pos(&err("{% endif %}")), (1, 4));
    assert_eq!(pos(&err("a\n\n{% set x = (1, %}")), (3, 16));
    let e = err("a\nb {% if x %}\nc");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("end of input"), "{e}");
    // columns count characters, not bytes
    assert_eq!(pos(&err("€€ {{ a + }}")), (1, 11));
}

#[test]
fn unknown_variables_rejected_at_save_with_position() {
    let s = schema();
    let e = Template::compile_checked(
        "b.txt",
        "Hello {{ traits.first_name }},\n  see {{ frist_name }} and {{ frist_name }}",
        &s,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "2:10: unknown variable frist_name");

    let e = Template::compile_checked(
        "b.txt",
        "{% if scores.churn > 0.5 %}\n{{ scores.engagment|round }}{% endif %}",
        &s,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "2:4: unknown variable scores.engagment");

    // earliest offending reference wins, unknown features and fields on scalars rejected
    let e = Template::compile_checked("b.txt", "{{ features.nope }} {{ stage.x }}", &s).unwrap_err();
    assert_eq!(e.to_string(), "1:4: unknown variable features.nope");
    let e = Template::compile_checked("b.txt", "{{ user.id }}{{ stage.x }}", &s).unwrap_err();
    assert_eq!(e.to_string(), "1:17: unknown variable stage.x");

    // a name mentioned in text or a string literal is not a reference
    let e = Template::compile_checked("b.txt", "oops oops {{ 'oops' ~ oops }}", &s).unwrap_err();
    assert_eq!(pos(&e), (1, 23));

    // loop variables, set variables and globals are fine
    let ok = "{% set n = traits.name %}{% for i in range(3) %}{{ i }}{{ n }}{% endfor %}\
              {% for item in decision.content %}{{ item.title }}{% endfor %}\
              {{ features.sessions_7d }} {{ brand.logo.url }} {{ unsubscribe_url }} {{ user.time_zone }}";
    let t = Template::compile_checked("b.txt", ok, &s).unwrap();
    assert_eq!(
        t.variables(),
        [
            "brand.logo.url",
            "decision.content",
            "features.sessions_7d",
            "traits.name",
            "unsubscribe_url",
            "user.time_zone"
        ]
    );

    // TemplateSet::insert reports the part and changes nothing
    let mut set = TemplateSet::new("en");
    let e = set.insert("en", "Hi", "Body", Some("<p>{{ usr.id }}</p>"), &s).unwrap_err();
    assert_eq!(e.part, Part::Html);
    assert_eq!(e.to_string(), "en html 1:7: unknown variable usr");
    assert!(set.locales().is_empty());
}

#[test]
fn strict_render_errors_for_missing_trait() {
    let mut set = TemplateSet::new("en");
    set.insert(
        "en",
        "Hi {{ traits.first_name }}",
        "Hello,\n  {{ traits.first_name }} / {{ traits.frist_name }}",
        None,
        &schema(),
    )
    .unwrap();
    let e = set.render("en", &json!({"traits": {"first_name": "Ada"}})).unwrap_err();
    match e {
        RenderError::Template { locale, part, error } => {
            assert_eq!((locale.as_str(), part), ("en", Part::Body));
            assert_eq!(error.to_string(), "2:32: unknown variable traits.frist_name");
        }
        other => panic!("{other:?}"),
    }
    // a missing root is an error too, as is an `if` on a missing value
    let e = set.render("en", &json!({})).unwrap_err();
    assert!(e.to_string().contains("1:7"), "{e}");
    let mut set = TemplateSet::new("en");
    set.insert("en", "{% if traits.vip %}VIP{% endif %}", "b", None, &schema()).unwrap();
    assert!(set.render("en", &json!({"traits": {}})).is_err());
    assert_eq!(set.render("en", &json!({"traits": {"vip": true}})).unwrap().subject, "VIP");
    assert_eq!(set.render("en", &json!([1])).unwrap_err(), RenderError::BadContext);
}

#[test]
fn locale_fallback_chain() {
    let avail = ["en", "de", "de-AT", "pt_br"];
    assert_eq!(resolve(&avail, "de-AT", "en"), ["de-AT", "de", "en"]);
    assert_eq!(resolve(&avail, "de_at", "en"), ["de-AT", "de", "en"]);
    assert_eq!(resolve(&avail, "de-CH", "en"), ["de", "en"]);
    assert_eq!(resolve(&avail, "fr-FR", "en"), ["en"]);
    assert_eq!(resolve(&avail, "PT-BR", "en"), ["pt_br", "en"]);
    assert_eq!(resolve(&avail, "fr", "it"), Vec::<&str>::new());
    assert_eq!(resolve(&avail, "en-GB", "EN"), ["en"]);
    assert_eq!(normalize_locale("zh_hant_tw"), "zh-Hant-TW");

    let mut set = TemplateSet::new("EN");
    let s = schema();
    set.insert("en", "Hello", "en body", None, &s).unwrap();
    set.insert("de", "Hallo", "de body", None, &s).unwrap();
    set.insert("DE_at", "Servus", "at body", None, &s).unwrap();
    assert_eq!(set.locales(), ["de", "de-AT", "en"]);
    let ctx = json!({});
    let r = |l: &str| set.render(l, &ctx).unwrap();
    assert_eq!((r("de-AT").locale_used, r("de-AT").subject), ("de-AT".into(), "Servus".into()));
    assert_eq!(r("de_CH").subject, "Hallo");
    assert_eq!(r("fr").locale_used, "en");
    assert!(set.remove("de-at"));
    assert_eq!(set.render("de-AT", &ctx).unwrap().subject, "Hallo");

    let mut only_de = TemplateSet::new("en");
    only_de.insert("de", "Hallo", "b", None, &s).unwrap();
    assert_eq!(only_de.render("fr", &ctx).unwrap_err(), RenderError::NoLocale { wanted: "fr".into() });
}

#[test]
fn html_part_escaped_text_parts_not() {
    let mut set = TemplateSet::new("en");
    set.insert(
        "en",
        "News from {{ brand.name }}",
        "Hi {{ traits.name }}",
        Some("<p>Hi {{ traits.name }} from {{ brand.name }}</p>{{ brand.footer|safe }}"),
        &schema(),
    )
    .unwrap();
    let r = set
        .render(
            "en",
            &json!({
                "traits": {"name": "<b>Tom & \"Jerry\"</b>"},
                "brand": {"name": "A&B", "footer": "<hr>"}
            }),
        )
        .unwrap();
    assert_eq!(r.subject, "News from A&B");
    assert_eq!(r.body, "Hi <b>Tom & \"Jerry\"</b>");
    assert_eq!(
        r.html.as_deref(),
        Some("<p>Hi &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;&#x2f;b&gt; from A&amp;B</p><hr>")
    );
    assert!(Template::compile("x.html", "").unwrap().is_html());
    assert!(!Template::compile("x.txt", "").unwrap().is_html());
}

#[test]
fn filters() {
    let mut set = TemplateSet::new("en");
    set.insert(
        "en",
        "{{ traits.name|default('there')|title }} {{ stage|upper }}",
        "{{ traits.total|money(traits.currency) }} on {{ traits.at|date('%a %e %B %Y, %H:%M') }} \
         / {{ traits.at|date }} / {{ traits.nick|default('friend') }}",
        None,
        &schema(),
    )
    .unwrap();
    let r = set
        .render(
            "en",
            &json!({
                "stage": "trial",
                "traits": {"name": "ada lovelace", "total": 123456, "currency": "EUR",
                           "at": "2026-03-05T14:07:00Z"}
            }),
        )
        .unwrap();
    assert_eq!(r.subject, "Ada Lovelace TRIAL");
    assert_eq!(r.body, "€1,234.56 on Thu 5 March 2026, 14:07 / 2026-03-05 / friend");
    let r = set
        .render("en", &json!({"stage": "x", "traits": {"total": -5, "currency": "chf", "at": "2026-01-01"}}))
        .unwrap();
    assert_eq!(r.subject, "There X");
    assert_eq!(r.body, "-0.05 CHF on Thu 1 January 2026, 00:00 / 2026-01-01 / friend");
    // bad input to a filter is a render error with position
    let e = set
        .render("en", &json!({"stage": "x", "traits": {"total": 1, "currency": "USD", "at": "soon"}}))
        .unwrap_err();
    assert!(e.to_string().contains("not an ISO-8601 date"), "{e}");
}

fn traits(v: serde_json::Value) -> JsonMap {
    v.as_object().cloned().expect("an object")
}

fn typed_context() -> RenderContext {
    RenderContext::new()
        .traits(traits(
            json!({"first_name": "ada", "total": 123456, "tags": ["a", "b"], "address": {"city": "Wien"}}),
        ))
        .features([("sessions_7d", 12.0)])
        .scores(Scores { engagement: 0.7, churn: 0.62, stage: "active".into() })
        .decision(Decision {
            id: "d1".into(),
            campaign: "weekly".into(),
            arm: "b".into(),
            channel: Some("email".into()),
            content: Some(value_from_json(
                &json!([{"title": "Mug", "price": 1299}, {"title": "Kettle", "price": 5999}]),
            )),
        })
        .var("unsubscribe_url", "https://example.com/u/1")
        .json("brand", json!({"name": "A&B"}))
}

#[test]
fn typed_context_renders_like_json() {
    let mut set = TemplateSet::new("en");
    let body = "{{ traits.first_name|title }} {{ traits.total|money('EUR') }} {{ traits.tags|join(',') }} \
                {{ traits.address.city }} {{ features.sessions_7d }} {{ scores.churn }} {{ stage|upper }} \
                {{ decision.id }}/{{ decision.campaign }}/{{ decision.arm }}/{{ decision.channel }} \
                {% for item in decision.content %}{{ item.title }}={{ item.price|money('EUR') }};{% endfor %} \
                {{ unsubscribe_url }} {{ traits|length }} {% for k in traits|sort %}{{ k }},{% endfor %}";
    set.insert("en", "{{ brand.name }}", body, Some("<p>{{ brand.name }}</p>"), &schema()).unwrap();
    let typed = set.render_context("en", &typed_context()).unwrap();
    let expected = "Ada €1,234.56 a,b Wien 12.0 0.62 ACTIVE d1/weekly/b/email Mug=€12.99;Kettle=€59.99; \
                    https://example.com/u/1 4 address,first_name,tags,total,";
    assert_eq!(typed.body, expected);
    assert_eq!(typed.html.as_deref(), Some("<p>A&amp;B</p>"));
    let json = set
        .render(
            "en",
            &json!({
                "traits": {"first_name": "ada", "total": 123456, "tags": ["a", "b"], "address": {"city": "Wien"}},
                "features": {"sessions_7d": 12.0},
                "scores": {"engagement": 0.7, "churn": 0.62},
                "stage": "active",
                "decision": {"id": "d1", "campaign": "weekly", "arm": "b", "channel": "email",
                             "content": [{"title": "Mug", "price": 1299}, {"title": "Kettle", "price": 5999}]},
                "unsubscribe_url": "https://example.com/u/1",
                "brand": {"name": "A&B"}
            }),
        )
        .unwrap();
    assert_eq!(json, typed);
    let from_map = RenderContext::from_json_map(traits(json!({"stage": "x", "brand": {"name": "Y"}})));
    set.insert("fr", "{{ brand.name }}", "{{ stage }}", None, &schema()).unwrap();
    assert_eq!(set.render_context("fr", &from_map).unwrap().body, "x");
}

#[test]
fn typed_context_is_strict() {
    let mut set = TemplateSet::new("en");
    let s = schema();
    set.insert("en", "Hi {{ traits.first_name }}", "Hello,\n  {{ traits.frist_name }}", None, &s).unwrap();
    match set.render_context("en", &typed_context()).unwrap_err() {
        RenderError::Template { locale, part, error } => {
            assert_eq!((locale.as_str(), part), ("en", Part::Body));
            assert_eq!(error.to_string(), "2:6: unknown variable traits.frist_name");
        }
        other => panic!("{other:?}"),
    }
    // missing roots, absent optional decision fields, unknown nested keys and `if` on a missing
    // trait are errors, not empty output
    for body in [
        "{{ user.id }}",
        "{{ decision.content }}",
        "{{ traits.address.zip }}",
        "{% if traits.vip %}VIP{% endif %}",
        "{{ scores.engagment }}",
    ] {
        let mut set = TemplateSet::new("en");
        set.insert(
            "en",
            "s",
            body,
            None,
            &Schema::new().any("user").any("decision").any("traits").any("scores"),
        )
        .unwrap();
        let ctx = RenderContext::new()
            .traits(traits(json!({"address": {"city": "Wien"}})))
            .decision(Decision::default())
            .scores(Scores { engagement: 1.0, churn: 0.0, stage: "new".into() });
        assert!(set.render_context("en", &ctx).is_err(), "{body}");
    }
}

#[test]
fn wrong_language_warned_at_save() {
    let mut set = TemplateSet::new("en");
    let s = schema();
    let english = "Hi {{ traits.first_name }},\n\nThank you for your order. We shipped the package today \
                   and hope you enjoy your new products.\n\nUnsubscribe: {{ unsubscribe_url }}";
    let german = "Hallo {{ traits.first_name }},\n\nvielen Dank für deine Bestellung. Wir haben das Paket \
                  heute verschickt und wünschen dir viel Freude.\n\nAbmelden: {{ unsubscribe_url }}";
    let warnings =
        set.insert("de_AT", "Deine Bestellung", english, Some(&format!("<p>{german}</p>")), &s).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!((w.locale.as_str(), w.part, w.detected), ("de-AT", Part::Body, "en"));
    assert!(w.confidence > 0.9);
    assert_eq!(w.to_string(), format!("de-AT body reads as en (confidence {:.2})", w.confidence));
    // a warning is not an error: the locale is saved
    assert_eq!(set.locales(), ["de-AT"]);
    assert!(set.insert("de", "Deine Bestellung", german, None, &s).unwrap().is_empty());
    assert!(set.insert("en", "Your order", english, None, &s).unwrap().is_empty());
    // short parts and a German text with an English brand are fine
    assert!(
        set.insert("de", "Hi {{ traits.first_name }}", "Acme Weekly Picks", None, &s).unwrap().is_empty()
    );
}
