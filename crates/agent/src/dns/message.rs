//! DNS messages as the proxy needs them (hickory-proto for the wire format): a query's question names, the
//! REFUSED / SERVFAIL / FORMERR answers the proxy makes itself, and what an upstream answer teaches (the CNAME
//! chain from the question name and the A/AAAA addresses of the chain's names).

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData};

/// The longest CNAME chain followed from a question name (resolvers stop well before; so does the proxy).
pub const MAX_CNAME_CHAIN: usize = 16;

/// The EDNS payload size the proxy advertises in the answers it makes itself (the DNS flag day 2020 value).
const OWN_EDNS_PAYLOAD: u16 = 1232;

/// A query as the proxy reads it.
#[derive(Debug)]
pub struct Query {
    /// The decoded message (kept to build the proxy's own answers and to check the upstream answer).
    pub message: Message,
    /// The canonical names of every question, in order.
    pub names: Vec<String>,
}

impl Query {
    /// The question name of a query with exactly one question: only such a query can teach addresses.
    pub fn single_name(&self) -> Option<&str> {
        match self.names.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }

    pub fn id(&self) -> u16 {
        self.message.metadata.id
    }
}

/// Why bytes are not a query the proxy handles.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("not a DNS message: {0}")]
    Malformed(String),
    #[error("a response, not a query")]
    NotAQuery,
}

/// Reads a query. A query the proxy cannot read is not forwarded (the caller answers FORMERR when it has a
/// header): a name the proxy cannot see is a name the policy cannot judge.
pub fn parse_query(bytes: &[u8]) -> Result<Query, QueryError> {
    let message = Message::from_vec(bytes).map_err(|e| QueryError::Malformed(e.to_string()))?;
    if message.metadata.message_type != MessageType::Query {
        return Err(QueryError::NotAQuery);
    }
    let names = message
        .queries
        .iter()
        .map(|q| canonical_name(&q.name))
        .collect();
    Ok(Query { message, names })
}

/// A name as the policy spells names: lower case, labels joined by `.`, no trailing dot (the root is `""`).
/// Bytes other than `[a-z0-9-_*]` (after lower-casing ASCII letters) are written `\DDD` (decimal, as in zone
/// files), so that a label holding a `.` or a control byte can never read as a policy name.
pub fn canonical_name(name: &Name) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'*' {
                out.push(b as char);
            } else {
                out.push('\\');
                out.push_str(&format!("{b:03}"));
            }
        }
    }
    out
}

/// The proxy's own answer to `query` with `rcode`: same id and opcode, the question echoed, RD and CD copied,
/// RA set (the proxy fronts a recursive resolver), and an OPT record when the query had one (RFC 6891 6.1.1).
pub fn error_response(query: &Message, rcode: ResponseCode) -> Result<Vec<u8>, String> {
    let mut response = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.recursion_available = true;
    response.metadata.response_code = rcode;
    response.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OWN_EDNS_PAYLOAD);
        response.edns = Some(edns);
    }
    response.to_vec().map_err(|e| e.to_string())
}

/// FORMERR for bytes that do not decode as a message but hold a header: the id and opcode are kept, the RD bit
/// copied, every count zero. `None` when there is no header to answer.
pub fn formerr_for_raw(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0] = bytes[0];
    out[1] = bytes[1];
    // QR, the opcode (bits 3..6 of byte 2) and RD (bit 0).
    out[2] = 0x80 | (bytes[2] & 0x79);
    // RA, RCODE 1 (FORMERR).
    out[3] = 0x80 | 0x01;
    Some(out)
}

/// What an upstream answer teaches about the question name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnswerFacts {
    /// The answer's rcode.
    pub rcode: u16,
    /// TC: a truncated UDP answer (the client retries over TCP).
    pub truncated: bool,
    /// The CNAME chain from the question name, canonical, without the question name.
    pub cname_chain: Vec<String>,
    /// The A/AAAA addresses of the question name or a chain name, with the smallest TTL on the way to them (an
    /// address reached through a CNAME is valid only as long as the CNAME is).
    pub addrs: Vec<(IpAddr, u32)>,
}

/// Why an upstream message is not the answer to the query that was sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("not a DNS message: {0}")]
    Malformed(String),
    #[error("not a response")]
    NotAResponse,
    #[error("id {got} does not answer query id {want}")]
    WrongId { got: u16, want: u16 },
    #[error("the answer's question differs from the query's")]
    WrongQuestion,
}

/// Decodes an upstream answer to `query` and reads what it teaches. The answer must carry the query's id and
/// question (anything else is not its answer: a late or forged datagram). Only a NOERROR answer to a query with
/// exactly one question teaches addresses; records for names outside the chain are ignored (an answer cannot
/// teach an address for a name it was not asked about).
pub fn parse_answer(bytes: &[u8], query: &Query) -> Result<AnswerFacts, AnswerError> {
    let message = Message::from_vec(bytes).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    if message.metadata.message_type != MessageType::Response {
        return Err(AnswerError::NotAResponse);
    }
    if message.metadata.id != query.id() {
        return Err(AnswerError::WrongId {
            got: message.metadata.id,
            want: query.id(),
        });
    }
    let same_question = message.queries.len() == query.message.queries.len()
        && message
            .queries
            .iter()
            .zip(&query.message.queries)
            .all(|(a, q)| {
                a.query_type == q.query_type
                    && a.query_class == q.query_class
                    && canonical_name(&a.name) == canonical_name(&q.name)
            });
    // Some servers answer FORMERR / NOTIMP / REFUSED without echoing the question; such an answer teaches nothing
    // and is the client's to see.
    let bare_error =
        message.queries.is_empty() && message.metadata.response_code != ResponseCode::NoError;
    if !same_question && !bare_error {
        return Err(AnswerError::WrongQuestion);
    }
    let mut facts = AnswerFacts {
        rcode: u16::from(message.metadata.response_code),
        truncated: message.metadata.truncation,
        ..AnswerFacts::default()
    };
    let Some(qname) = query.single_name() else {
        return Ok(facts);
    };
    if message.metadata.response_code != ResponseCode::NoError {
        return Ok(facts);
    }
    let answers: Vec<(String, u32, &RData)> = message
        .answers
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN)
        .map(|r| (canonical_name(&r.name), r.ttl, &r.data))
        .collect();

    // Follow the chain: each step is the first CNAME owned by the current name; a loop or an overlong chain stops.
    let mut ttl_to: Vec<(String, u32)> = vec![(qname.to_string(), u32::MAX)];
    let mut seen: HashSet<String> = HashSet::from([qname.to_string()]);
    while facts.cname_chain.len() < MAX_CNAME_CHAIN {
        let Some((current, ttl_so_far)) = ttl_to.last().map(|(name, ttl)| (name.clone(), *ttl))
        else {
            break;
        };
        let next = answers.iter().find_map(|(owner, ttl, data)| match data {
            RData::CNAME(target) if *owner == current => Some((canonical_name(target), *ttl)),
            _ => None,
        });
        let Some((target, ttl)) = next else { break };
        if !seen.insert(target.clone()) {
            break;
        }
        facts.cname_chain.push(target.clone());
        ttl_to.push((target, ttl_so_far.min(ttl)));
    }
    for (owner, ttl, data) in &answers {
        let ip = match data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        if let Some((_, chain_ttl)) = ttl_to.iter().find(|(name, _)| name == owner) {
            facts.addrs.push((ip, (*ttl).min(*chain_ttl)));
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query as Question};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
    use hickory_proto::rr::{Record, RecordType};
    use std::str::FromStr;

    fn query_bytes(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries
            .push(Question::query(Name::from_str(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    fn answer_to(query: &[u8], records: Vec<Record>, rcode: ResponseCode) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.queries = q.queries.clone();
        m.answers = records;
        m.to_vec().unwrap()
    }

    fn rec(name: &str, ttl: u32, data: RData) -> Record {
        Record::from_rdata(Name::from_str(name).unwrap(), ttl, data)
    }

    #[test]
    fn question_names_are_canonical() {
        let q = parse_query(&query_bytes(7, "API.GitHub.com.", RecordType::A)).unwrap();
        assert_eq!(q.single_name(), Some("api.github.com"));
        assert_eq!(q.id(), 7);
        let odd = Name::from_labels(vec![b"a.b".to_vec(), b"C\x00".to_vec()]).unwrap();
        assert_eq!(canonical_name(&odd), "a\\046b.c\\000");
        assert_eq!(canonical_name(&Name::root()), "");
    }

    #[test]
    fn a_query_with_two_questions_has_no_single_name() {
        let mut m = Message::new(1, MessageType::Query, OpCode::Query);
        m.queries.push(Question::query(
            Name::from_str("a.example.").unwrap(),
            RecordType::A,
        ));
        m.queries.push(Question::query(
            Name::from_str("b.example.").unwrap(),
            RecordType::A,
        ));
        let q = parse_query(&m.to_vec().unwrap()).unwrap();
        assert_eq!(
            q.names,
            vec!["a.example".to_string(), "b.example".to_string()]
        );
        assert_eq!(q.single_name(), None);
        let mut r = Message::new(1, MessageType::Response, OpCode::Query);
        r.queries = m.queries.clone();
        r.answers
            .push(rec("a.example.", 60, RData::A(A::new(192, 0, 2, 1))));
        let facts = parse_answer(&r.to_vec().unwrap(), &q).unwrap();
        assert!(facts.addrs.is_empty());
    }

    #[test]
    fn responses_and_garbage_are_not_queries() {
        let q = query_bytes(9, "x.example.", RecordType::A);
        let answer = answer_to(&q, vec![], ResponseCode::NoError);
        assert!(matches!(parse_query(&answer), Err(QueryError::NotAQuery)));
        assert!(matches!(
            parse_query(&q[..14]),
            Err(QueryError::Malformed(_))
        ));
        let formerr = formerr_for_raw(&q[..14]).unwrap();
        let decoded = Message::from_vec(&formerr).unwrap();
        assert_eq!(decoded.metadata.id, 9);
        assert_eq!(decoded.metadata.response_code, ResponseCode::FormErr);
        assert!(decoded.metadata.recursion_desired);
        assert_eq!(decoded.metadata.message_type, MessageType::Response);
        assert!(formerr_for_raw(&q[..5]).is_none());
    }

    #[test]
    fn refused_echoes_id_and_question() {
        let bytes = query_bytes(0xbeef, "Exfil.Example.", RecordType::TXT);
        let q = parse_query(&bytes).unwrap();
        let r =
            Message::from_vec(&error_response(&q.message, ResponseCode::Refused).unwrap()).unwrap();
        assert_eq!(r.metadata.id, 0xbeef);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(r.metadata.recursion_desired);
        assert!(r.metadata.recursion_available);
        assert_eq!(r.queries, q.message.queries);
        assert!(r.answers.is_empty());
        assert!(r.edns.is_none());
    }

    #[test]
    fn refused_keeps_edns_when_the_query_had_it() {
        let mut m = Message::new(3, MessageType::Query, OpCode::Query);
        m.queries.push(Question::query(
            Name::from_str("e.example.").unwrap(),
            RecordType::A,
        ));
        m.edns = Some(Edns::new());
        let q = parse_query(&m.to_vec().unwrap()).unwrap();
        let r = Message::from_vec(&error_response(&q.message, ResponseCode::ServFail).unwrap())
            .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.edns.map(|e| e.max_payload()), Some(OWN_EDNS_PAYLOAD));
    }

    #[test]
    fn addresses_of_the_question_name() {
        let qb = query_bytes(1, "api.example.", RecordType::A);
        let q = parse_query(&qb).unwrap();
        let ab = answer_to(
            &qb,
            vec![
                rec("API.example.", 300, RData::A(A::new(192, 0, 2, 10))),
                rec(
                    "api.example.",
                    30,
                    RData::AAAA(AAAA::from_str("2001:db8::1").unwrap()),
                ),
                // Unrelated owner: never learned.
                rec("evil.example.", 300, RData::A(A::new(203, 0, 113, 9))),
                rec("api.example.", 300, RData::TXT(TXT::new(vec!["x".into()]))),
            ],
            ResponseCode::NoError,
        );
        let facts = parse_answer(&ab, &q).unwrap();
        assert!(facts.cname_chain.is_empty());
        assert_eq!(
            facts.addrs,
            vec![
                ("192.0.2.10".parse().unwrap(), 300),
                ("2001:db8::1".parse().unwrap(), 30)
            ]
        );
    }

    #[test]
    fn cname_chain_in_order_with_the_smallest_ttl() {
        let qb = query_bytes(2, "www.example.", RecordType::A);
        let q = parse_query(&qb).unwrap();
        let ab = answer_to(
            &qb,
            vec![
                // Out of order on purpose: the chain follows owners, not positions.
                rec(
                    "cdn.example.net.",
                    600,
                    RData::CNAME(CNAME(Name::from_str("edge.example.org.").unwrap())),
                ),
                rec(
                    "www.example.",
                    120,
                    RData::CNAME(CNAME(Name::from_str("CDN.example.net.").unwrap())),
                ),
                rec("edge.example.org.", 300, RData::A(A::new(198, 51, 100, 7))),
                // A CNAME of an unrelated name does not join the chain.
                rec(
                    "other.example.",
                    120,
                    RData::CNAME(CNAME(Name::from_str("edge2.example.org.").unwrap())),
                ),
                rec("edge2.example.org.", 300, RData::A(A::new(198, 51, 100, 8))),
            ],
            ResponseCode::NoError,
        );
        let facts = parse_answer(&ab, &q).unwrap();
        assert_eq!(
            facts.cname_chain,
            vec![
                "cdn.example.net".to_string(),
                "edge.example.org".to_string()
            ]
        );
        assert_eq!(facts.addrs, vec![("198.51.100.7".parse().unwrap(), 120)]);
    }

    #[test]
    fn cname_loops_and_long_chains_stop() {
        let qb = query_bytes(3, "a.example.", RecordType::A);
        let q = parse_query(&qb).unwrap();
        let looped = answer_to(
            &qb,
            vec![
                rec(
                    "a.example.",
                    60,
                    RData::CNAME(CNAME(Name::from_str("b.example.").unwrap())),
                ),
                rec(
                    "b.example.",
                    60,
                    RData::CNAME(CNAME(Name::from_str("a.example.").unwrap())),
                ),
            ],
            ResponseCode::NoError,
        );
        assert_eq!(
            parse_answer(&looped, &q).unwrap().cname_chain,
            vec!["b.example".to_string()]
        );
        let mut records = Vec::new();
        for i in 0..40 {
            let owner = if i == 0 {
                "a.example.".to_string()
            } else {
                format!("c{i}.example.")
            };
            let target = format!("c{}.example.", i + 1);
            records.push(rec(
                &owner,
                60,
                RData::CNAME(CNAME(Name::from_str(&target).unwrap())),
            ));
        }
        records.push(rec("c40.example.", 60, RData::A(A::new(192, 0, 2, 40))));
        let long = answer_to(&qb, records, ResponseCode::NoError);
        let facts = parse_answer(&long, &q).unwrap();
        assert_eq!(facts.cname_chain.len(), MAX_CNAME_CHAIN);
        assert!(facts.addrs.is_empty());
    }

    #[test]
    fn nxdomain_teaches_nothing_and_wrong_answers_are_rejected() {
        let qb = query_bytes(4, "gone.example.", RecordType::A);
        let q = parse_query(&qb).unwrap();
        let nx = answer_to(
            &qb,
            vec![rec("gone.example.", 60, RData::A(A::new(192, 0, 2, 1)))],
            ResponseCode::NXDomain,
        );
        let facts = parse_answer(&nx, &q).unwrap();
        assert_eq!(facts.rcode, 3);
        assert!(facts.addrs.is_empty());
        let other = answer_to(
            &query_bytes(5, "gone.example.", RecordType::A),
            vec![],
            ResponseCode::NoError,
        );
        assert_eq!(
            parse_answer(&other, &q),
            Err(AnswerError::WrongId { got: 5, want: 4 })
        );
        let other_q = answer_to(
            &query_bytes(4, "here.example.", RecordType::A),
            vec![],
            ResponseCode::NoError,
        );
        assert_eq!(parse_answer(&other_q, &q), Err(AnswerError::WrongQuestion));
        assert_eq!(parse_answer(&qb, &q), Err(AnswerError::NotAResponse));
        // An error answer without the question is still the answer (it teaches nothing); a NOERROR one is not.
        let mut bare = Message::new(4, MessageType::Response, OpCode::Query);
        bare.metadata.response_code = ResponseCode::FormErr;
        let facts = parse_answer(&bare.to_vec().unwrap(), &q).unwrap();
        assert_eq!((facts.rcode, facts.addrs.len()), (1, 0));
        bare.metadata.response_code = ResponseCode::NoError;
        bare.answers
            .push(rec("gone.example.", 60, RData::A(A::new(192, 0, 2, 1))));
        assert_eq!(
            parse_answer(&bare.to_vec().unwrap(), &q),
            Err(AnswerError::WrongQuestion)
        );
    }
}
