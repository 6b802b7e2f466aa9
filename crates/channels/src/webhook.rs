//! Webhooks: a JSON POST signed with HMAC-SHA256 over timestamp and body.
