//! The SES v2 provider against an axum server on loopback that recomputes the SigV4
//! signature of every request, reads the raw MIME back out of `Content.Raw.Data`, and answers
//! as SES documents (success, throttling, rejections, server errors).

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use whisperer_channels::email::SesConfig;
use whisperer_channels::email::sigv4::{Request, Signer};
use whisperer_channels::{Channel, FailureKind, Message, MessageKind, Provider, Recipient};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{Seen, serve};

fn config(base_url: &str) -> SesConfig {
    SesConfig {
        base_url: Some(base_url.to_owned()),
        session_token: Some("FQoGZXIvYXdzEXAMPLETOKEN".into()),
        configuration_set: Some("marketing".into()),
        from_name: Some("Shop News".into()),
        ..SesConfig::new("eu-west-1", "AKIDEXAMPLE", SECRET, "news@shop.example")
    }
}

fn message() -> Message {
    Message {
        id: "msg_ses_1".into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: None,
        channel: Channel::Email,
        kind: MessageKind::Marketing,
        recipient: Recipient::Email { address: "ada@example.com".into(), name: None },
        subject: Some("Your cart misses you".into()),
        text: "Hello Ada".into(),
        html: Some("<p>Hello Ada</p>".into()),
        headers: vec![
            ("List-Unsubscribe".into(), "<https://u.shop.example/u/tok>".into()),
            ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
        ],
        data: Default::default(),
    }
}

/// Recomputes the request's signature from what arrived, as SES would, and checks it.
fn check_signature(seen: &Seen) {
    let authorization = seen.headers["authorization"].to_str().unwrap();
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256 ").expect(authorization);
    let fields: std::collections::HashMap<&str, &str> =
        rest.split(", ").map(|kv| kv.split_once('=').unwrap()).collect();
    let amz_date = seen.headers["x-amz-date"].to_str().unwrap();
    assert_eq!(amz_date.len(), 16, "{amz_date}");
    let now = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(amz_date.starts_with(&now), "{amz_date} is today");
    assert_eq!(fields["Credential"], format!("AKIDEXAMPLE/{}/eu-west-1/ses/aws4_request", &amz_date[..8]));
    let signed: Vec<&str> = fields["SignedHeaders"].split(';').collect();
    for required in ["content-type", "host", "x-amz-date", "x-amz-security-token"] {
        assert!(signed.contains(&required), "{required} is signed: {signed:?}");
    }
    let values: Vec<(String, String)> =
        signed.iter().map(|n| (n.to_string(), seen.headers[*n].to_str().unwrap().to_owned())).collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let signer = Signer {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
        region: "eu-west-1",
        service: "ses",
    };
    let request = Request {
        method: seen.method.as_str(),
        path: &seen.path,
        query: "",
        headers: &headers,
        payload: &seen.body,
    };
    assert_eq!(
        fields["Signature"],
        signer.sign(&request, amz_date).signature,
        "signature recomputed from the wire"
    );
    // A wrong secret does not give the same signature: the check above can fail.
    let wrong = Signer { secret_access_key: "other", ..signer };
    assert_ne!(fields["Signature"], wrong.sign(&request, amz_date).signature);
}

#[tokio::test]
async fn send_email_is_signed_and_carries_the_raw_mime() {
    let (url, server) = serve(vec![(
        200,
        vec![("content-type", "application/json")],
        r#"{"MessageId":"0102018abc-ses-id"}"#.into(),
    )])
    .await;
    let provider = config(&url).build().unwrap();
    let receipt = provider.send(&message()).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("0102018abc-ses-id"));

    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/v2/email/outbound-emails");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-amz-security-token"], "FQoGZXIvYXdzEXAMPLETOKEN");
    check_signature(&seen);

    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["FromEmailAddress"], "news@shop.example");
    assert_eq!(body["Destination"], json!({"ToAddresses": ["ada@example.com"]}));
    assert_eq!(body["ConfigurationSetName"], "marketing");
    assert_eq!(body["EmailTags"], json!([{"Name": "whisperer_message_id", "Value": "msg_ses_1"}]));
    let raw = String::from_utf8(STANDARD.decode(body["Content"]["Raw"]["Data"].as_str().unwrap()).unwrap())
        .unwrap();
    assert!(raw.contains("\r\nList-Unsubscribe: <https://u.shop.example/u/tok>\r\n"), "{raw}");
    assert!(raw.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), "{raw}");
    assert!(raw.contains("Message-ID: <msg_ses_1@shop.example>\r\n"), "{raw}");
    assert!(raw.contains("From: \"Shop News\" <news@shop.example>\r\n"), "{raw}");
    assert!(raw.contains("Content-Type: multipart/alternative;"), "{raw}");
}

#[tokio::test]
async fn ses_errors_map_to_what_happens_next() {
    let (url, _server) = serve(vec![
        (
            429,
            vec![
                (
                    "x-amzn-errortype",
                    "TooManyRequestsException:http://internal.amazon.com/coral/com.amazon.coral.service/",
                ),
                ("retry-after", "3"),
            ],
            r#"{"message":"Too many requests"}"#.into(),
        ),
        (
            400,
            vec![("x-amzn-errortype", "MessageRejected:")],
            r#"{"message":"Email address is not verified."}"#.into(),
        ),
        (
            400,
            vec![],
            r#"{"__type":"com.amazonaws.sesv2#AccountSuspendedException","message":"account suspended"}"#
                .into(),
        ),
        (
            400,
            vec![("x-amzn-errortype", "MailFromDomainNotVerifiedException")],
            r#"{"message":"mail from"}"#.into(),
        ),
        (503, vec![], "Service Unavailable".into()),
    ])
    .await;
    let provider = config(&url).build().unwrap();

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (FailureKind::RateLimited, "TooManyRequestsException"),
        "{err}"
    );
    assert_eq!(err.retry_after_ms, Some(3_000));

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Provider, "MessageRejected"), "{err}");
    assert_eq!(err.message, "Email address is not verified.");

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Provider, "AccountSuspendedException"), "{err}");

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Provider, "MailFromDomainNotVerifiedException"));

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Transient, "503"), "{err}");
}
