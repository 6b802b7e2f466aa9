//! Fuzz target for the request decoder: arbitrary bytes, as any endpoint, plain or gzip.
//! Run: `cargo install cargo-fuzz && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use whisperer_core::EventType;
use whisperer_ingest::decode::{Endpoint, Limits, decode, decompress};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let endpoint = match selector % 7 {
        0 => Endpoint::Batch,
        n => Endpoint::Single(EventType::ALL[(n - 1) as usize]),
    };
    let encoding = if selector & 0x80 != 0 { Some("gzip") } else { None };
    let limits = Limits { max_request_bytes: 64 * 1024, max_message_bytes: 8 * 1024 };
    let Ok(plain) = decompress(body, encoding, &limits) else { return };
    assert!(plain.len() <= limits.max_request_bytes);
    if let Ok(request) = decode(endpoint, &plain, &limits) {
        for draft in request.messages.into_iter().flatten() {
            assert!(draft.raw.len() <= limits.max_message_bytes);
            let value: serde_json::Value = serde_json::from_str(&draft.raw).expect("a draft is valid JSON");
            assert!(value.is_object());
            assert!(draft.user_id.is_some() || draft.anonymous_id.is_some());
        }
    }
});
