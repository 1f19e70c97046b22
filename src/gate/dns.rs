//! DNS messages for strict mode's resolver: reading a query (RFC 1035 §4)
//! and writing the few answers the gate gives. Pure: bytes in, bytes out;
//! every index is checked, so no input panics (fuzzed: `fuzz/fuzz_targets/dns.rs`).
//!
//! A query is read strictly, since stub resolvers send nothing fancier: a
//! 12-byte header with QR=0, OPCODE=0, exactly one question, no answer or
//! authority records, and at most one additional record, which must be an
//! EDNS OPT (RFC 6891) with the root name. The question's name is labels of
//! at most 63 bytes (a length byte's top two bits are its type), 255 bytes
//! in all on the wire (so at most 253 as text), and no compression pointer:
//! a query's only name needs none, and refusing them means no pointer is
//! ever followed (no loop to bound). Nothing may follow the last record.
//!
//! The name is normalised as a CONNECT target's host is
//! ([`parse_host`]: lowercase, no trailing dot), so a name matches the
//! allowlist exactly as a CONNECT target does; a label holding a byte no
//! host name has (a `.` inside a label, a space, non-ASCII) makes it
//! [`QName::NotAHost`], never a name that reads like an allowed one.
//!
//! Answers echo the question byte for byte (a resolver that randomises the
//! name's case sees its own back), echo RD, set RA, and set AA on NOERROR
//! (the pool's addresses are this gate's own). EDNS is read and ignored:
//! answers carry no OPT record (RFC 6891 §7 lets a responder answer as one
//! without EDNS), and are at most 12 + 259 + 16 = 287 bytes, well under the
//! 512 of plain DNS over UDP.

use std::net::Ipv4Addr;

use crate::policy::authority::{parse_host, Host};

/// A DNS header's length.
pub const HEADER_LEN: usize = 12;
/// The largest answer plain DNS over UDP may carry without EDNS.
pub const MAX_UDP_ANSWER: usize = 512;
/// The TTL of every A answer: short, so nothing outlives the invocation's pool.
pub const TTL: u32 = 5;
/// The longest name on the wire (RFC 1035 §2.3.4), length bytes and root included.
const MAX_WIRE_NAME: usize = 255;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 §4.1.1).
pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;

const FLAG_QR: u16 = 0x8000;
const MASK_OPCODE: u16 = 0x7800;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// The first four bytes of a message: its ID and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
}

impl Header {
    /// A response, not a query.
    pub fn is_response(self) -> bool {
        self.flags & FLAG_QR != 0
    }

    pub fn opcode(self) -> u8 {
        // Four bits: the cast cannot truncate.
        ((self.flags & MASK_OPCODE) >> 11) as u8
    }
}

/// The name a question asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QName {
    /// A host name (or a dotted-quad IPv4 literal), normalised exactly as a
    /// CONNECT target's host is.
    Host(Host),
    /// Well-formed DNS, but no host name an allowlist could match: the root,
    /// a label holding a byte no host name has, a name [`parse_host`]
    /// refuses. `shown` is the name as text, with such bytes escaped as
    /// dig writes them (`\.`, `\032`).
    NotAHost { shown: String, why: String },
}

/// A well-formed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub header: Header,
    /// The question section as sent (name, type, class), echoed in answers.
    pub question: &'a [u8],
    pub name: QName,
    pub qtype: u16,
    pub qclass: u16,
    /// The UDP payload size an EDNS OPT record advertised: read, then
    /// ignored (answers fit in 512 bytes and carry no OPT).
    pub edns: Option<u16>,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Query(Query<'a>),
    /// The header is readable, the rest is not a query we read: answered
    /// FORMERR with the ID echoed.
    Malformed {
        header: Header,
        why: &'static str,
    },
    /// An opcode other than QUERY (NOTIFY, UPDATE, ...): answered NOTIMP.
    NotQuery {
        header: Header,
    },
    /// Not answered at all: shorter than a header (no ID to echo), or a
    /// response (answering one invites two responders to ping-pong).
    Ignored {
        why: &'static str,
    },
}

/// Reads a message.
pub fn parse(msg: &[u8]) -> Parsed<'_> {
    let mut reader = Reader { msg, pos: 0 };
    let (Some(id), Some(flags)) = (reader.u16(), reader.u16()) else {
        return Parsed::Ignored {
            why: "shorter than a DNS header (12 bytes)",
        };
    };
    let counts = [reader.u16(), reader.u16(), reader.u16(), reader.u16()];
    let [Some(qdcount), Some(ancount), Some(nscount), Some(arcount)] = counts else {
        return Parsed::Ignored {
            why: "shorter than a DNS header (12 bytes)",
        };
    };
    let header = Header { id, flags };
    if header.is_response() {
        return Parsed::Ignored {
            why: "a DNS response, not a query: not answered",
        };
    }
    if header.opcode() != 0 {
        return Parsed::NotQuery { header };
    }
    let malformed = |why| Parsed::Malformed { header, why };
    if qdcount != 1 {
        return malformed("not exactly one question");
    }
    if ancount != 0 || nscount != 0 {
        return malformed("a query with answer or authority records");
    }
    if arcount > 1 {
        return malformed("more than one additional record");
    }
    let labels = match reader.name() {
        Ok(labels) => labels,
        Err(why) => return malformed(why),
    };
    let (Some(qtype), Some(qclass)) = (reader.u16(), reader.u16()) else {
        return malformed("the question is cut short");
    };
    let Some(question) = msg.get(HEADER_LEN..reader.pos) else {
        return malformed("the question is cut short");
    };
    let edns = match arcount {
        0 => None,
        _ => match reader.opt() {
            Ok(size) => Some(size),
            Err(why) => return malformed(why),
        },
    };
    if reader.pos != msg.len() {
        return malformed("bytes after the last record");
    }
    Parsed::Query(Query {
        header,
        question,
        name: qname(&labels),
        qtype,
        qclass,
        edns,
    })
}

/// A cursor over a message; every read is checked.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.msg.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        match self.bytes(2)? {
            &[hi, lo] => Some(u16::from_be_bytes([hi, lo])),
            _ => None,
        }
    }

    /// A name's labels, root excluded. Each step moves forward by at least
    /// one byte and the name is capped at 255, so this ends.
    fn name(&mut self) -> Result<Vec<&'a [u8]>, &'static str> {
        let mut labels = Vec::new();
        let mut wire = 0usize;
        loop {
            let len = self.u8().ok_or("the name is cut short")?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return Err("a compression pointer in the question"),
                _ => return Err("a reserved label type"),
            }
            wire += 1 + usize::from(len);
            if wire > MAX_WIRE_NAME {
                return Err("a name longer than 255 bytes");
            }
            if len == 0 {
                return Ok(labels);
            }
            let label = self.bytes(usize::from(len)).ok_or("the name is cut short")?;
            labels.push(label);
        }
    }

    /// The one additional record, which must be EDNS OPT: its advertised
    /// UDP payload size.
    fn opt(&mut self) -> Result<u16, &'static str> {
        let labels = self.name()?;
        let cut = "the additional record is cut short";
        let rtype = self.u16().ok_or(cut)?;
        let size = self.u16().ok_or(cut)?;
        self.bytes(4).ok_or(cut)?; // extended RCODE, version, flags
        let rdlength = self.u16().ok_or(cut)?;
        self.bytes(usize::from(rdlength)).ok_or(cut)?;
        match (rtype, labels.is_empty()) {
            (TYPE_OPT, true) => Ok(size),
            (TYPE_OPT, false) => Err("an EDNS OPT record whose name is not the root"),
            _ => Err("an additional record that is not EDNS OPT"),
        }
    }
}

/// The name of a question's labels: a normalised host if every byte is one
/// a host name has and [`parse_host`] takes it.
fn qname(labels: &[&[u8]]) -> QName {
    let hostlike = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    if labels.is_empty() {
        return QName::NotAHost {
            shown: ".".to_string(),
            why: "the root name".to_string(),
        };
    }
    if !labels.iter().all(|label| label.iter().all(hostlike)) {
        return QName::NotAHost {
            shown: shown(labels),
            why: "a label holds a byte no host name has".to_string(),
        };
    }
    let text = shown(labels);
    match parse_host(&text) {
        Ok(host) => QName::Host(host),
        Err(e) => QName::NotAHost {
            shown: text,
            why: e.to_string(),
        },
    }
}

/// Labels as text, dot-separated, with bytes no host name has escaped as
/// dig writes them: `\.` and `\\` for a dot and a backslash inside a label,
/// `\DDD` (decimal) for the rest.
fn shown(labels: &[&[u8]]) -> String {
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label.iter() {
            match b {
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                _ if b.is_ascii_graphic() => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
    }
    out
}

/// A query type as dig names it (RFC 3597's `TYPEnnn` for the rest).
pub fn type_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{qtype}"),
    };
    name.to_string()
}

/// An answer's header: the query's ID, opcode and RD; QR and RA set; AA on
/// NOERROR.
fn header(query: Header, rcode: u8, qdcount: u16, ancount: u16) -> Vec<u8> {
    let aa = if rcode == NOERROR { FLAG_AA } else { 0 };
    let flags = FLAG_QR | (query.flags & (MASK_OPCODE | FLAG_RD)) | aa | FLAG_RA | u16::from(rcode & 0x0f);
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + MAX_WIRE_NAME + 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in [qdcount, ancount, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out
}

/// The answer to an A query: one A record for `ip`, named by a pointer to
/// the question's name.
pub fn answer_a(query: &Query<'_>, ip: Ipv4Addr) -> Vec<u8> {
    let mut out = header(query.header, NOERROR, 1, 1);
    out.extend_from_slice(query.question);
    out.extend_from_slice(&[0xC0, 0x0C]); // the name at offset 12
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&ip.octets());
    out
}

/// NOERROR with no records (NODATA): the name is there, with nothing of
/// that type.
pub fn nodata(query: &Query<'_>) -> Vec<u8> {
    let mut out = header(query.header, NOERROR, 1, 0);
    out.extend_from_slice(query.question);
    out
}

/// REFUSED, with the question echoed.
pub fn refused(query: &Query<'_>) -> Vec<u8> {
    let mut out = header(query.header, REFUSED, 1, 0);
    out.extend_from_slice(query.question);
    out
}

/// FORMERR: the header alone, its ID echoed.
pub fn formerr(query: Header) -> Vec<u8> {
    header(query, FORMERR, 0, 0)
}

/// NOTIMP: the header alone, its ID and opcode echoed.
pub fn notimp(query: Header) -> Vec<u8> {
    header(query, NOTIMP, 0, 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query as dig writes it: ID 0x1234, RD, one question, and an EDNS
    /// OPT record if `edns`.
    pub(crate) fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        msg.extend(wire_name(name));
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        if edns {
            msg.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        msg
    }

    fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn parsed_query(msg: &[u8]) -> Query<'_> {
        match parse(msg) {
            Parsed::Query(q) => q,
            other => panic!("not a query: {other:?}"),
        }
    }

    fn host(name: &str) -> QName {
        QName::Host(Host::Name(name.to_string()))
    }

    fn malformed(msg: &[u8]) -> &'static str {
        match parse(msg) {
            Parsed::Malformed { header, why } => {
                assert_eq!(header.id, u16::from_be_bytes([msg[0], msg[1]]));
                why
            }
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[test]
    fn a_plain_query() {
        let msg = query("registry.npmjs.org", TYPE_A, false);
        let q = parsed_query(&msg);
        assert_eq!(q.header.id, 0x1234);
        assert_eq!(q.name, host("registry.npmjs.org"));
        assert_eq!((q.qtype, q.qclass, q.edns), (TYPE_A, CLASS_IN, None));
        assert_eq!(q.question, &msg[12..]);
    }

    #[test]
    fn edns_is_read_and_the_question_ends_before_it() {
        let msg = query("registry.npmjs.org", TYPE_AAAA, true);
        let q = parsed_query(&msg);
        assert_eq!(q.edns, Some(1232));
        assert_eq!(q.qtype, TYPE_AAAA);
        assert_eq!(q.question.len(), 20 + 4);
    }

    #[test]
    fn names_are_lowercased_and_a_trailing_dot_is_the_root() {
        let msg = query("ReGiStRy.NPMJS.org.", TYPE_A, false);
        let q = parsed_query(&msg);
        assert_eq!(q.name, host("registry.npmjs.org"));
        // The question is echoed as asked, case and all.
        assert_eq!(&q.question[1..9], b"ReGiStRy");
    }

    #[test]
    fn a_name_of_253_characters_is_read_and_254_is_malformed() {
        let name_253 = [
            &"a".repeat(63)[..],
            &"b".repeat(63),
            &"c".repeat(63),
            &"d".repeat(61),
        ]
        .join(".");
        assert_eq!(name_253.len(), 253);
        let msg = query(&name_253, TYPE_A, false);
        assert_eq!(parsed_query(&msg).name, host(&name_253));
        let name_254 = format!("{name_253}e");
        let msg = query(&name_254, TYPE_A, false);
        assert_eq!(malformed(&msg), "a name longer than 255 bytes");
    }

    #[test]
    fn a_label_of_64_bytes_is_a_reserved_label_type() {
        let msg = query(&format!("{}.com", "a".repeat(64)), TYPE_A, false);
        assert_eq!(malformed(&msg), "a reserved label type");
    }

    #[test]
    fn short_messages_and_responses_are_not_answered() {
        for msg in [&b""[..], b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"] {
            assert!(matches!(parse(msg), Parsed::Ignored { .. }), "{msg:?}");
        }
        let mut msg = query("registry.npmjs.org", TYPE_A, false);
        msg[2] |= 0x80;
        assert_eq!(
            parse(&msg),
            Parsed::Ignored {
                why: "a DNS response, not a query: not answered"
            }
        );
    }

    #[test]
    fn other_opcodes_are_not_queries() {
        let mut msg = query("registry.npmjs.org", TYPE_A, false);
        msg[2] |= 5 << 3; // UPDATE
        let Parsed::NotQuery { header } = parse(&msg) else {
            panic!("{:?}", parse(&msg));
        };
        let answer = notimp(header);
        assert_eq!(answer, [0x12, 0x34, 0xa9, 0x84, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn question_counts_other_than_one_are_malformed() {
        let mut msg = query("registry.npmjs.org", TYPE_A, false);
        msg[5] = 0;
        assert_eq!(malformed(&msg), "not exactly one question");
        msg[5] = 2;
        assert_eq!(malformed(&msg), "not exactly one question");
    }

    #[test]
    fn answer_authority_and_extra_additional_records_are_malformed() {
        for (at, why) in [
            (7, "a query with answer or authority records"),
            (9, "a query with answer or authority records"),
        ] {
            let mut msg = query("a.example", TYPE_A, false);
            msg[at] = 1;
            assert_eq!(malformed(&msg), why);
        }
        let mut msg = query("a.example", TYPE_A, true);
        msg[11] = 2;
        assert_eq!(malformed(&msg), "more than one additional record");
    }

    #[test]
    fn compression_pointers_are_refused_not_followed() {
        // A pointer to itself: a loop if followed.
        let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1];
        assert_eq!(malformed(&msg), "a compression pointer in the question");
        // A label, then a pointer back to it.
        msg.truncate(12);
        msg.extend_from_slice(&[1, b'a', 0xC0, 0x0C, 0, 1, 0, 1]);
        assert_eq!(malformed(&msg), "a compression pointer in the question");
    }

    #[test]
    fn bad_label_lengths_are_malformed() {
        let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[5, b'a', b'b']);
        assert_eq!(malformed(&msg), "the name is cut short");
        let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, b'a'];
        assert_eq!(malformed(&msg), "a reserved label type");
        msg[12] = 0x81;
        assert_eq!(malformed(&msg), "a reserved label type");
        let msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1];
        assert_eq!(malformed(&msg), "the question is cut short");
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut msg = query("a.example", TYPE_A, false);
        msg.push(0);
        assert_eq!(malformed(&msg), "bytes after the last record");
        let mut msg = query("a.example", TYPE_A, true);
        msg.push(0);
        assert_eq!(malformed(&msg), "bytes after the last record");
    }

    #[test]
    fn the_additional_record_must_be_a_root_opt() {
        let mut msg = query("a.example", TYPE_A, true);
        let type_low = msg.len() - 9;
        msg[type_low] = 1; // type 1 instead of 41
        assert_eq!(malformed(&msg), "an additional record that is not EDNS OPT");
        let mut msg = query("a.example", TYPE_A, false);
        msg[11] = 1;
        msg.extend_from_slice(&[1, b'x', 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(malformed(&msg), "an EDNS OPT record whose name is not the root");
        // OPT with options: rdata skipped.
        let mut msg = query("a.example", TYPE_A, false);
        msg[11] = 1;
        msg.extend_from_slice(&[0, 0, 41, 2, 0, 0, 0, 0x80, 0, 0, 4, 0, 10, 0, 0]);
        assert_eq!(parsed_query(&msg).edns, Some(512));
        // rdata longer than the message.
        let len = msg.len();
        msg[len - 5] = 9;
        assert_eq!(malformed(&msg), "the additional record is cut short");
    }

    #[test]
    fn names_no_host_has_are_not_hosts() {
        let cases: [(&[u8], &str); 4] = [
            (b"\x0eregistry.npmjs\x03org\x00", "registry\\.npmjs.org"),
            (b"\x03a b\x03com\x00", "a\\032b.com"),
            (b"\x02\xc3\xa9\x03com\x00", "\\195\\169.com"),
            (b"\x00", "."),
        ];
        for (name, want) in cases {
            let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(name);
            msg.extend_from_slice(&[0, 1, 0, 1]);
            match parsed_query(&msg).name {
                QName::NotAHost { shown, why } if want != "." => {
                    assert_eq!(shown, want);
                    assert_eq!(why, "a label holds a byte no host name has");
                }
                QName::NotAHost { shown, why } => {
                    assert_eq!((shown.as_str(), why.as_str()), (".", "the root name"))
                }
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_parse_host_refuses_say_why() {
        let msg = query("127.1", TYPE_A, false);
        let QName::NotAHost { shown, why } = parsed_query(&msg).name else {
            panic!("127.1 is no host name");
        };
        assert_eq!(shown, "127.1");
        assert!(why.contains("numeric"), "{why}");
        let msg = query("-a.example", TYPE_A, false);
        assert!(matches!(parsed_query(&msg).name, QName::NotAHost { .. }));
        let msg = query("10.0.0.1", TYPE_A, false);
        assert_eq!(
            parsed_query(&msg).name,
            QName::Host(Host::Ip("10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))))
        );
    }

    #[test]
    fn an_a_answer_echoes_the_question_and_points_at_its_name() {
        let msg = query("Registry.npmjs.org", TYPE_A, true);
        let q = parsed_query(&msg);
        let answer = answer_a(&q, Ipv4Addr::new(198, 18, 0, 7));
        let mut want = vec![0x12, 0x34, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        want.extend_from_slice(q.question);
        want.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 198, 18, 0, 7]);
        assert_eq!(answer, want);
        assert!(answer.len() <= MAX_UDP_ANSWER);
    }

    #[test]
    fn nodata_refused_and_formerr_answers() {
        let mut msg = query("registry.npmjs.org", TYPE_AAAA, false);
        msg[2] = 0; // RD clear: echoed clear
        let q = parsed_query(&msg);
        let mut want = vec![0x12, 0x34, 0x84, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(q.question);
        assert_eq!(nodata(&q), want);
        let mut want = vec![0x12, 0x34, 0x80, 0x85, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(q.question);
        assert_eq!(refused(&q), want);
        assert_eq!(
            formerr(Header { id: 7, flags: 0x0100 }),
            [0, 7, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(1), "A");
        assert_eq!(type_name(28), "AAAA");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(999), "TYPE999");
    }
}
