//! The authority normaliser: no input panics; what it accepts is a
//! normalised name or IP literal, and normalising is idempotent.
#![no_main]

use cli_guard::{parse_authority, Host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(authority) = parse_authority(text) else {
        return;
    };
    assert_ne!(authority.port, 0);
    if let Host::Name(name) = &authority.host {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(!name.ends_with('.') && !name.starts_with('.') && !name.contains(".."));
        assert!(name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')));
    }
    let again = parse_authority(&authority.to_string());
    assert_eq!(again.as_ref(), Ok(&authority), "not idempotent: {text:?} -> {authority}");
});
