//! Email providers: SMTP, SendGrid v3 and Amazon SES v2.
