//! AWS Signature Version 4 over ring's HMAC-SHA256 and SHA-256, just enough for a JSON POST
//! to one AWS endpoint: canonical request, string to sign, derived key, `Authorization`.

use ring::{digest, hmac};

/// `AWS4-HMAC-SHA256`.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One request to sign. `headers` must hold every header to sign, `host` and `x-amz-date`
/// among them; names in any case.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The URI-encoded path, `/` when empty.
    pub path: &'a str,
    /// The URI-encoded query without `?`, possibly empty.
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// Who signs, for which region and service.
#[derive(Clone, Debug)]
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The parts of a signature, for tests and for debugging a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    /// Lowercase hex.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// `x-amz-date` for an instant: `20150830T123600Z`.
pub fn amz_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

impl Signer<'_> {
    /// Signs `request` made at `amz_date` (`YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`).
    pub fn sign(&self, request: &Request<'_>, amz_date: &str) -> Signature {
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| {
                (name.to_ascii_lowercase(), value.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .collect();
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        // Repeated headers become one line with comma-separated values, in request order.
        let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            match merged.last_mut() {
                Some((last, values)) if *last == name => {
                    values.push(',');
                    values.push_str(&value);
                }
                _ => merged.push((name, value)),
            }
        }
        let canonical_headers: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let signed_headers = merged.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
        let mut query: Vec<&str> = request.query.split('&').filter(|p| !p.is_empty()).collect();
        query.sort_unstable();
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            request.method,
            if request.path.is_empty() { "/" } else { request.path },
            query.join("&"),
            canonical_headers,
            signed_headers,
            sha256_hex(request.payload)
        );
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign =
            format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
        let key = hmac(format!("AWS4{}", self.secret_access_key).as_bytes(), date.as_bytes());
        let key = hmac(key.as_ref(), self.region.as_bytes());
        let key = hmac(key.as_ref(), self.service.as_bytes());
        let key = hmac(key.as_ref(), b"aws4_request");
        let signature = hex::encode(hmac(key.as_ref(), string_to_sign.as_bytes()));
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        );
        Signature { canonical_request, string_to_sign, signed_headers, signature, authorization }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: Signer<'static> = Signer {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
    };

    /// AWS's SigV4 test suite, `get-vanilla`: the documented canonical request, string to
    /// sign and signature.
    #[test]
    fn get_vanilla_from_the_aws_test_suite() {
        let headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")];
        let request = Request { method: "GET", path: "/", query: "", headers: &headers, payload: b"" };
        let signed = SUITE.sign(&request, "20150830T123600Z");
        assert_eq!(
            signed.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The suite's `post-vanilla`: same request as a POST.
    #[test]
    fn post_vanilla_from_the_aws_test_suite() {
        let headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")];
        let request = Request { method: "POST", path: "/", query: "", headers: &headers, payload: b"" };
        assert_eq!(
            SUITE.sign(&request, "20150830T123600Z").signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    /// The suite's `get-vanilla-query-order-key-case`: parameters are sorted.
    #[test]
    fn query_parameters_are_sorted() {
        let headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")];
        let request = Request {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            payload: b"",
        };
        assert_eq!(
            SUITE.sign(&request, "20150830T123600Z").signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn amz_dates_are_basic_iso8601_utc() {
        let at = chrono::DateTime::from_timestamp(1_440_938_160, 0).unwrap();
        assert_eq!(amz_date(at), "20150830T123600Z");
    }
}
