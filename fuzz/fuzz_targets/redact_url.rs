//! Any text as a database location: redaction never panics, and a password
//! given in the URL's user info or as a `password=` query parameter comes
//! out as `***`, the rest of the URL unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::durable::store::redact_url;

fuzz_target!(|input: (&str, &str, &str)| {
    let (anything, password, host) = input;
    let _ = redact_url(anything);
    // In a URL these characters would be percent-encoded in a password.
    if password.is_empty() || password.contains(['@', '/', '?', '#', '&']) {
        return;
    }
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/')).collect();
    let redacted = redact_url(&format!("postgres://user:{password}@{host}"));
    assert_eq!(redacted, format!("postgres://user:***@{host}"));
    let redacted = redact_url(&format!("postgres://db.internal/app?sslmode=disable&password={password}"));
    assert_eq!(redacted, "postgres://db.internal/app?sslmode=disable&password=***");
});
