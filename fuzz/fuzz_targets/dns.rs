//! Strict mode's resolver: no message panics the parser or the answer; no
//! answer is longer than plain DNS over UDP allows (512 bytes); an answer
//! echoes the query's ID; and an address is given only for a name the
//! policy allows, and only one the pool gave that name.
#![no_main]

use cli_guard::dns::{parse, Parsed, QName, MAX_UDP_ANSWER};
use cli_guard::{answer_query, answered_address, parse_authority, Decision, Host, Pool, TOOLS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    for policy in TOOLS {
        let pool = Pool::new();
        let answered = answer_query(policy, &pool, data);
        let Some(reply) = answered.reply else {
            assert!(
                matches!(parsed, Parsed::Ignored { .. }),
                "{parsed:?} got no answer"
            );
            continue;
        };
        assert!(reply.len() <= MAX_UDP_ANSWER, "{} bytes", reply.len());
        assert_eq!(reply.get(..2), data.get(..2), "the ID is not echoed");
        assert_ne!(reply.get(2).map(|b| b & 0x80), Some(0), "QR is not set");
        // The reply reads back as a response, never as a query to answer.
        assert!(matches!(parse(&reply), Parsed::Ignored { .. }));
        let Some(ip) = answered_address(&reply) else {
            continue;
        };
        let Parsed::Query(query) = &parsed else {
            panic!("an address for a message that is no query: {parsed:?}");
        };
        let QName::Host(Host::Name(name)) = &query.name else {
            panic!("an address for {:?}", query.name);
        };
        assert_eq!(query.qtype, 1, "an address for a query of type {}", query.qtype);
        assert_eq!(
            pool.name_of(ip).as_deref(),
            Some(name.as_str()),
            "{ip} is not {name}'s"
        );
        // An independent oracle: some rule names this host on some port,
        // or the tool is in observe mode (which decides any target so).
        let host = Host::Name(name.clone());
        let allowed = policy
            .allow
            .iter()
            .any(|rule| rule.ports.iter().any(|&port| rule.matches(&host, port)));
        let observed = parse_authority("unlisted.invalid:443")
            .is_ok_and(|target| policy.decide(&target) == Decision::Observed);
        assert!(
            allowed || observed,
            "{} answered {name}, which it does not allow",
            policy.name
        );
        assert_eq!(answered.row.host, Some(host));
    }
});
