//! Push providers: Firebase Cloud Messaging HTTP v1 and Web Push (VAPID, RFC 8291).
