//! The request-head parser and the verdict on what it parses: no input
//! panics, and a complete head never claims more bytes than it was given.
#![no_main]

use cli_guard::parse_head;
use cli_guard::{judge, parse_authority};
use cli_guard::TOOLS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(head)) = parse_head(data) else {
        return;
    };
    assert!(head.head_len <= data.len());
    for policy in TOOLS {
        match judge(policy, &head, None) {
            Ok(judged) => {
                // Only a CONNECT is ever dialled, and only to what it named.
                assert_eq!(head.method, "CONNECT");
                assert_eq!(parse_authority(&head.target).as_ref(), Ok(&judged.target));
            }
            Err(refusal) => assert!(matches!(refusal.status, 400 | 403 | 405), "{refusal:?}"),
        }
    }
});
