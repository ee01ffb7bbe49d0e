//! The header grammar of RFC 3261 §25 that the SIP stack does not check, and the
//! canonical form of a header section (sans-I/O, text in, text or a problem out).
//!
//! rsipstack parses header values lazily and leniently: a Via with empty
//! parameters, a display name with an unbalanced quote, a repeated Call-ID or a
//! CSeq beyond 2³¹ all pass, and folded lines (RFC 3261 §7.3.1) do not parse at
//! all. The RFC 4475 torture messages (tests/fixtures/rfc4475) are the reference:
//! every valid one must reach the stack in a form it reads, every malformed one is
//! answered 400 (or the specific 4xx/5xx RFC 3261 §8.2 names) here. No crate does
//! this for rsipstack's types, so the checks are written out; they only look at
//! the text of the head, never at the body.

/// Why a request is refused: the status, the reason (for the Warning header), and
/// any header the response must carry (`Unsupported` with 420, `Accept` with 415).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub reason: String,
    pub header: Option<String>,
}

impl Problem {
    pub fn bad(reason: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
            header: None,
        }
    }

    fn with(status: u16, reason: impl Into<String>, header: Option<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            header,
        }
    }
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// The long name of a header, lower case (compact forms expanded, RFC 3261 §7.3.3).
pub fn long_name(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    let long = match name.as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        _ => return name,
    };
    long.to_string()
}

/// Headers whose values are structured (parameters, lists, name-addrs): white space
/// around their separators is not significant and is taken out.
const STRUCTURED: &[&str] = &[
    "via",
    "to",
    "from",
    "contact",
    "route",
    "record-route",
    "cseq",
    "call-id",
    "max-forwards",
    "content-length",
    "content-type",
    "expires",
    "require",
    "proxy-require",
    "supported",
    "accept",
];

/// The request's header section in canonical form: folded lines joined (§7.3.1),
/// white space around `:` after header names removed, and in structured values
/// the optional white space around `; = ,` (and `/` in Via) removed and runs of
/// white space made one space. Quoted strings and `<...>` are left exactly as
/// they are. Returns `None` when the datagram is already canonical, is not text,
/// or has no end of header section; the body is never touched.
pub fn canonical(datagram: &[u8]) -> Option<Vec<u8>> {
    let end = datagram.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&datagram[..end]).ok()?;
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        let headers_begun = lines.len() > 1;
        match lines.last_mut() {
            Some(last) if headers_begun && line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut out = String::with_capacity(head.len());
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push_str(line);
            continue;
        }
        out.push_str("\r\n");
        match line.split_once(':') {
            Some((name, value)) if is_token(name.trim()) => {
                let name = name.trim();
                let value = value.trim();
                out.push_str(name);
                out.push_str(": ");
                let long = long_name(name);
                if STRUCTURED.contains(&long.as_str()) {
                    out.push_str(&compact(value, long == "via"));
                } else {
                    out.push_str(value);
                }
            }
            _ => out.push_str(line),
        }
    }
    if let Some(tag) = rfc2543_from_tag(&out) {
        out = tag;
    }
    if out == head {
        return None;
    }
    let mut rewritten = out.into_bytes();
    rewritten.extend_from_slice(&datagram[end..]);
    Some(rewritten)
}

/// An RFC 2543 request has no From tag, which RFC 3261 transactions (and
/// rsipstack's) key on. RFC 4475 §3.4.1 asks that it still be accepted, so it gets
/// a tag made from its Call-ID and CSeq (the same for every retransmission; RFC
/// 2543 defines From tags too, so its sender reads the response).
fn rfc2543_from_tag(head: &str) -> Option<String> {
    let mut lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
    let field = |lines: &[String], name: &str| {
        lines.iter().skip(1).position(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| long_name(n.trim()) == name)
        })
    };
    let from = field(&lines, "from")? + 1;
    let value = lines[from].split_once(':')?.1;
    let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
    if params.to_ascii_lowercase().contains(";tag=") {
        return None;
    }
    let call_id = field(&lines, "call-id").map(|i| lines[i + 1].clone())?;
    let cseq = field(&lines, "cseq").map(|i| lines[i + 1].clone())?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{call_id}\n{cseq}").as_bytes());
    lines[from].push_str(&format!(";tag=rfc2543-{}", hex::encode(&digest[..6])));
    Some(lines.join("\r\n"))
}

/// Follows quoted strings (with backslash escapes) character by character.
#[derive(Default)]
struct Quoting {
    quoted: bool,
    escaped: bool,
}

impl Quoting {
    /// Whether the next character is inside a quoted string.
    fn open(&self) -> bool {
        self.quoted
    }

    /// Takes in `c`: a quote opens or closes the string, a backslash escapes.
    fn feed(&mut self, c: char) {
        if !self.quoted {
            self.quoted = c == '"';
        } else if self.escaped {
            self.escaped = false;
        } else if c == '\\' {
            self.escaped = true;
        } else if c == '"' {
            self.quoted = false;
        }
    }
}

/// Removes the optional white space around separators, outside quotes and `<>`.
fn compact(value: &str, slash: bool) -> String {
    let is_sep = |c: char| matches!(c, ';' | '=' | ',') || (slash && c == '/');
    let mut out = String::with_capacity(value.len());
    let (mut q, mut angle, mut space) = (Quoting::default(), false, false);
    for c in value.chars() {
        if q.open() {
            out.push(c);
            q.feed(c);
            continue;
        }
        if angle {
            out.push(c);
            angle = c != '>';
            continue;
        }
        if c == ' ' || c == '\t' {
            space = true;
            continue;
        }
        if space && !is_sep(c) && !out.is_empty() && !out.ends_with(is_sep) {
            out.push(' ');
        }
        space = false;
        out.push(c);
        q.feed(c);
        angle = c == '<';
    }
    out
}

/// Splits a header section (after the start line) into (long name, value) pairs.
fn headers(head: &str) -> impl Iterator<Item = (String, &str)> {
    head.split("\r\n").skip(1).filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((long_name(name.trim()), value.trim()))
    })
}

/// Headers a request may carry once only (RFC 3261 §7.3.1: only headers defined
/// as comma-separated lists may repeat).
const SINGLE: &[&str] = &[
    "to",
    "from",
    "call-id",
    "cseq",
    "max-forwards",
    "content-length",
    "content-type",
    "expires",
    "date",
];

/// Option tags kefu supports in `Require`: session timers (RFC 4028).
const SUPPORTED: &[&str] = &["timer"];

/// Checks a request's start line: `METHOD SP Request-URI SP SIP/2.0`, exactly.
pub fn check_start_line(line: &str) -> Result<(), Problem> {
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(Problem::bad(
            "malformed request line; expected `METHOD sip:uri SIP/2.0`, single spaces",
        ));
    };
    if !is_token(method) {
        return Err(Problem::bad(format!("invalid method token {method:?}")));
    }
    if version != "SIP/2.0" {
        let numbered = version.strip_prefix("SIP/").is_some_and(|v| {
            v.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
            })
        });
        return Err(if numbered {
            Problem::with(
                505,
                format!("{version} is not supported; kefu speaks SIP/2.0"),
                None,
            )
        } else {
            Problem::bad(format!("malformed request line: bad version {version:?}"))
        });
    }
    if uri.starts_with('<') {
        return Err(Problem::bad(
            "the Request-URI must not be in angle brackets",
        ));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(Problem::bad(format!("Request-URI {uri:?} has no scheme")));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return Err(Problem::bad(format!("malformed Request-URI {uri:?}")));
    }
    // Headers follow the host part; a user part may hold `?` (RFC 4475 §3.1.1.2)
    // but never an unescaped `@`.
    let host_part = rest.split_once('@').map_or(rest, |(_, host)| host);
    match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" if host_part.contains('?') => Err(Problem::bad(
            "the Request-URI must not carry headers (RFC 3261 section 19.1.1)",
        )),
        "sip" | "sips" | "tel" => Ok(()),
        _ => Err(Problem::with(
            416,
            format!("URI scheme {scheme:?} is not supported"),
            None,
        )),
    }
}

/// Checks a request's header section (canonical, see [`canonical`]) for the
/// grammar the stack relies on; `method` is the start line's.
pub fn check_headers(method: &str, head: &str) -> Result<(), Problem> {
    for line in head.split("\r\n").skip(1) {
        let named = line
            .split_once(':')
            .is_some_and(|(name, _)| is_token(name.trim()));
        if !named {
            return Err(Problem::bad(format!("malformed header line {line:?}")));
        }
    }
    let list: Vec<(String, &str)> = headers(head).collect();
    for name in SINGLE {
        let n = list.iter().filter(|(h, _)| h == name).count();
        if n > 1 {
            return Err(Problem::bad(format!("{n} {name} headers; one is allowed")));
        }
    }
    for (name, value) in &list {
        match name.as_str() {
            "via" => check_via(value)?,
            "to" | "from" => name_addr(value).map_err(|e| Problem::bad(format!("{name}: {e}")))?,
            "contact" if *value != "*" => {
                for contact in split_list(value) {
                    name_addr(contact).map_err(|e| Problem::bad(format!("contact: {e}")))?;
                }
            }
            "max-forwards" if value.parse::<u8>().is_err() => {
                return Err(Problem::bad(format!(
                    "Max-Forwards {value:?} is not a number from 0 to 255"
                )));
            }
            "cseq" => check_cseq(method, value)?,
            "expires" if value.parse::<u32>().is_err() => {
                return Err(Problem::bad(format!(
                    "Expires {value:?} is not a number of seconds"
                )));
            }
            "date" => check_date(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks what a UAS may refuse before looking at the request's target (RFC 3261
/// §8.2.2.3 and §8.2.3): extensions it must support (420), the body's type (415)
/// and what the caller accepts back (406). Run after [`check_headers`].
pub fn check_acceptable(method: &str, head: &str, has_body: bool) -> Result<(), Problem> {
    if matches!(method, "ACK" | "CANCEL") {
        return Ok(());
    }
    let list: Vec<(String, &str)> = headers(head).collect();
    let required: Vec<&str> = list
        .iter()
        .filter(|(h, _)| h == "require")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !SUPPORTED.contains(&t.to_ascii_lowercase().as_str()))
        .collect();
    if !required.is_empty() {
        let tags = required.join(", ");
        return Err(Problem::with(
            420,
            format!("extension(s) {tags} not supported"),
            Some(format!("Unsupported: {tags}")),
        ));
    }
    if method != "INVITE" {
        return Ok(());
    }
    let content_type = list
        .iter()
        .find(|(h, _)| h == "content-type")
        .map(|(_, v)| *v);
    if has_body
        && !media_type(content_type.unwrap_or_default()).eq_ignore_ascii_case("application/sdp")
    {
        return Err(Problem::with(
            415,
            format!(
                "INVITE body must be application/sdp, not {:?}",
                content_type.unwrap_or_default()
            ),
            Some("Accept: application/sdp".into()),
        ));
    }
    let accepts: Vec<&str> = list
        .iter()
        .filter(|(h, _)| h == "accept")
        .flat_map(|(_, v)| v.split(','))
        .map(media_type)
        .filter(|t| !t.is_empty())
        .collect();
    let sdp_ok = accepts.is_empty()
        || accepts.iter().any(|t| {
            ["application/sdp", "application/*", "*/*"]
                .iter()
                .any(|ok| t.eq_ignore_ascii_case(ok))
        });
    if !sdp_ok {
        return Err(Problem::with(
            406,
            "kefu answers with application/sdp, which the Accept header leaves out",
            Some("Accept: application/sdp".into()),
        ));
    }
    Ok(())
}

/// `type/subtype` of a media type, without parameters.
fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// Splits a list header on commas outside quotes and `<>`.
fn split_list(value: &str) -> Vec<&str> {
    split_outside(value, ',')
}

/// Splits `value` on `sep` where it stands outside quotes and `<>`.
fn split_outside(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut q, mut angle, mut start) = (Quoting::default(), false, 0);
    for (i, c) in value.char_indices() {
        let quoted = q.open();
        q.feed(c);
        if quoted {
            continue;
        }
        match c {
            '<' => angle = true,
            '>' => angle = false,
            c if c == sep && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

/// Checks a `name-addr` or `addr-spec` with parameters (To, From, Contact).
fn name_addr(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value".into());
    }
    let rest = if let Some(quoted) = value.strip_prefix('"') {
        // quoted-string: ends at the first unescaped quote.
        let mut escaped = false;
        let close = quoted.char_indices().find_map(|(i, c)| {
            if escaped {
                escaped = false;
                None
            } else if c == '\\' {
                escaped = true;
                None
            } else {
                (c == '"').then_some(i)
            }
        });
        let Some(close) = close else {
            return Err("unterminated quoted display name".into());
        };
        let after = quoted[close + 1..].trim_start();
        if !after.starts_with('<') {
            return Err("a quoted display name must be followed by <uri>".into());
        }
        after
    } else if let Some(open) = value.find('<') {
        let display = value[..open].trim();
        // Tokens only (RFC 3261 §25.1); letters beyond ASCII are let through, as
        // phones and PBXes write local names unquoted.
        let word_ok = |w: &str| w.bytes().all(|b| is_token_char(b) || !b.is_ascii());
        if !display.split_whitespace().all(word_ok) {
            return Err(format!(
                "display name {display:?} must be quoted: it has characters a token may not"
            ));
        }
        &value[open..]
    } else {
        // addr-spec: the URI runs to the first `;` and may not hold `, ? ;`
        // itself (RFC 3261 §20: such a URI must be in angle brackets).
        let uri = value.split(';').next().unwrap_or_default();
        if !uri.contains(':') {
            return Err(format!("{uri:?} is not a URI"));
        }
        if uri.contains([',', '?', ' ', '"']) {
            return Err(format!("URI {uri:?} must be enclosed in <>"));
        }
        return check_params(&value[uri.len()..]);
    };
    let Some(close) = rest.find('>') else {
        return Err("< without >".into());
    };
    let uri = &rest[1..close];
    if uri.is_empty() || uri.contains(char::is_whitespace) {
        return Err(format!("URI {uri:?} may not contain spaces"));
    }
    check_params(&rest[close + 1..])
}

/// `*( ";" generic-param )` after a URI or a Via's sent-by.
fn check_params(params: &str) -> Result<(), String> {
    if params.is_empty() {
        return Ok(());
    }
    let Some(params) = params.strip_prefix(';') else {
        return Err(format!("unexpected {params:?} after the address"));
    };
    for p in split_outside(params, ';') {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        if !is_token(name) {
            return Err(format!("bad parameter {p:?}"));
        }
        if p.contains('=') && value.is_empty() {
            return Err(format!("parameter {name:?} has no value after ="));
        }
        let quoted_ok = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        if !value.is_empty()
            && !quoted_ok
            && !value
                .bytes()
                .all(|b| is_token_char(b) || b":[]".contains(&b))
        {
            return Err(format!("bad value in parameter {p:?}"));
        }
    }
    Ok(())
}

/// Each via-parm: `SIP/2.0/TRANSPORT host[:port]` and well-formed parameters.
fn check_via(value: &str) -> Result<(), Problem> {
    for via in split_list(value) {
        let bad = |why: String| Problem::bad(format!("malformed Via {via:?}: {why}"));
        let (protocol, rest) = via
            .split_once(' ')
            .ok_or_else(|| bad("no sent-by".into()))?;
        let mut proto = protocol.split('/');
        let (name, version, transport) = (proto.next(), proto.next(), proto.next());
        if !(name.is_some_and(is_token)
            && version.is_some_and(is_token)
            && transport.is_some_and(is_token)
            && proto.next().is_none())
        {
            return Err(bad("expected SIP/2.0/TRANSPORT".into()));
        }
        let sent_by = rest.split(';').next().unwrap_or_default();
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return Err(bad("bad host".into()));
        }
        check_params(&rest[sent_by.len()..]).map_err(bad)?;
    }
    Ok(())
}

/// `CSeq: number METHOD`, the number below 2³¹ (RFC 3261 §8.1.1.5), the method the
/// start line's.
fn check_cseq(method: &str, value: &str) -> Result<(), Problem> {
    let (number, cseq_method) = value.split_once(' ').unwrap_or((value, ""));
    let in_range = number.parse::<u32>().is_ok_and(|n| n < 1 << 31);
    if !in_range {
        return Err(Problem::bad(format!(
            "CSeq number {number:?} is not a number below 2^31"
        )));
    }
    if cseq_method != method {
        return Err(Problem::bad(format!(
            "CSeq method {cseq_method:?} does not match request method {method}"
        )));
    }
    Ok(())
}

/// `Date: Sat, 13 Nov 2010 23:29:00 GMT` (RFC 3261 §20.17: RFC 1123 dates, GMT only).
fn check_date(value: &str) -> Result<(), Problem> {
    let ok = value.ends_with(" GMT") && chrono::DateTime::parse_from_rfc2822(value).is_ok();
    if ok {
        Ok(())
    } else {
        Err(Problem::bad(format!(
            "Date {value:?} is not an RFC 1123 date in GMT"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_spaced_headers_become_canonical() {
        let raw = "INVITE sip:a@b SIP/2.0\r\nTO :\r\n sip:a@b ;   tag    = 19\r\n\
                   Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=z9hG4bK1\r\n\
                   from: \"A \\\\\\\"\"   <sip:c@d>\r\n  ;\r\n  tag = 98\r\n\
                   Subject: keep   these  spaces\r\n\r\nbody  stays";
        let out = String::from_utf8(canonical(raw.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out,
            "INVITE sip:a@b SIP/2.0\r\nTO: sip:a@b;tag=19\r\n\
             Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n\
             from: \"A \\\\\\\"\" <sip:c@d>;tag=98\r\n\
             Subject: keep   these  spaces\r\n\r\nbody  stays"
        );
        // Already canonical: nothing to copy.
        assert_eq!(canonical(out.as_bytes()), None);
        // An RFC 2543 request gets a From tag, the same each time.
        let old = "INVITE sip:b@e SIP/2.0\r\nVia: SIP/2.0/UDP gw.example.com\r\n\
                   From: <sip:a@e;user=phone>\r\nCall-ID: 1717@e\r\nCSeq: 56 INVITE\r\n\r\n";
        let once = String::from_utf8(canonical(old.as_bytes()).unwrap()).unwrap();
        assert!(
            once.contains("From: <sip:a@e;user=phone>;tag=rfc2543-"),
            "{once}"
        );
        assert_eq!(canonical(old.as_bytes()).unwrap(), once.as_bytes());
        assert_eq!(canonical(once.as_bytes()), None);
        assert_eq!(canonical(b"INVITE sip:a@b SIP/2.0\r\nTo: x"), None);
    }

    #[test]
    fn start_lines() {
        let status = |l| check_start_line(l).map_err(|p| p.status);
        assert_eq!(status("OPTIONS sip:a@b SIP/2.0"), Ok(()));
        assert_eq!(status("OPTIONS tel:+861012345 SIP/2.0"), Ok(()));
        assert_eq!(status("OPTIONS sip:a@b SIP/7.0"), Err(505));
        assert_eq!(status("OPTIONS sip:a@b SIP/2.0 "), Err(400));
        assert_eq!(status("OPTIONS  sip:a@b SIP/2.0"), Err(400));
        assert_eq!(status("INVITE <sip:a@b> SIP/2.0"), Err(400));
        assert_eq!(status("INVITE sip:a@b?Route=%3Csip:c%3E SIP/2.0"), Err(400));
        assert_eq!(
            status("OPTIONS soap.beep://192.0.2.1:3002 SIP/2.0"),
            Err(416)
        );
        assert_eq!(status("OPTIONS nobody:opaque SIP/2.0"), Err(416));
    }

    fn head(lines: &str) -> String {
        format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{lines}"
        )
    }

    #[test]
    fn header_grammar() {
        let check = |extra: &str| check_headers("INVITE", &head(extra)).map_err(|p| p.status);
        assert_eq!(check("Max-Forwards: 70"), Ok(()));
        assert_eq!(
            check("Contact: \"Quoted \\\"\\\"\" <sip:j@e>;q=0.33, <sip:k@e>"),
            Ok(())
        );
        assert_eq!(check("Contact: *"), Ok(()));
        assert_eq!(check("Max-Forwards: 300"), Err(400));
        assert_eq!(check("Call-ID: y"), Err(400));
        assert_eq!(check("l: 0\r\nContent-Length: 0"), Err(400));
        assert_eq!(check("Via: SIP/2.0/UDP 192.0.2.15;;,;,,"), Err(400));
        assert_eq!(check("Contact: \"Bell <sip:a@b>"), Err(400));
        assert_eq!(check("Contact: Bell, Alexander <sip:a@b>"), Err(400));
        assert_eq!(check("Contact: \"W, T\" < sip:t@e >"), Err(400));
        assert_eq!(check("Contact: sip:u@e?Route=%3Csip:s%3E"), Err(400));
        assert_eq!(check("Date: Fri, 01 Jan 2010 16:00:00 EST"), Err(400));
        assert!(name_addr("Bell, Alexander <sip:a@b>;tag=4").is_err());
        assert!(name_addr("token1~` token2'+_ 张三 <sip:m@e>;p=\"x;y\";tag=_t~1").is_ok());
        assert!(name_addr("isbn:2983792873").is_ok());
        assert_eq!(check("Date: Sat, 13 Nov 2010 23:29:00 GMT"), Ok(()));
        assert_eq!(check("Expires: 100000000000000000000"), Err(400));
        let big = head("").replace("CSeq: 1 INVITE", "CSeq: 36893488147419103232 INVITE");
        assert_eq!(
            check_headers("INVITE", &big).map_err(|p| p.status),
            Err(400)
        );
        let other = head("").replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
        assert_eq!(
            check_headers("INVITE", &other).map_err(|p| p.status),
            Err(400)
        );
    }

    #[test]
    fn what_a_uas_may_refuse_before_routing() {
        let check = |method, extra: &str, body| {
            check_acceptable(method, &head(extra), body).map_err(|p| (p.status, p.header))
        };
        assert_eq!(
            check("INVITE", "Content-Type: application/sdp", true),
            Ok(())
        );
        assert_eq!(
            check(
                "OPTIONS",
                "Require: nothingpeopleknowabout\r\nProxy-Require: x",
                false
            ),
            Err((420, Some("Unsupported: nothingpeopleknowabout".into())))
        );
        // Proxy-Require is for proxies.
        assert_eq!(check("OPTIONS", "Proxy-Require: x", false), Ok(()));
        assert_eq!(check("ACK", "Require: x", false), Ok(()));
        assert_eq!(
            check("INVITE", "Content-Type: application/unknownformat", true).map_err(|e| e.0),
            Err(415)
        );
        assert_eq!(
            check("INVITE", "Accept: text/nobodyKnowsThis", false).map_err(|e| e.0),
            Err(406)
        );
        assert_eq!(
            check(
                "INVITE",
                "Accept: application/sdp;level=1, text/plain",
                false
            ),
            Ok(())
        );
    }
}
