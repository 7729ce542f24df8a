//! RFC 3261 §25 grammar for the header fields the stack acts on before any
//! application sees a message: Via, the name-addr fields (From, To,
//! Contact, Route, Record-Route, Reply-To), Date, Max-Forwards and the
//! Request-URI. `rsip` parses these lazily and leniently; a gateway must
//! refuse what is malformed (RFC 4475 §3.1.2) yet take every valid
//! oddity (RFC 4475 §3.1.1: folding, LWS around separators, quoted-pairs,
//! unusual token characters). Values arrive unfolded (see
//! [`crate::normalize`]). Pure functions over `&str`.

/// RFC 3261 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// A scanner over one header value.
struct Scan<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Self {
        Scan {
            s: s.as_bytes(),
            at: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }
    fn lws(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at > start
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    /// A separator with optional LWS around it (RFC 3261 SLASH, SEMI, EQUAL…).
    fn sep(&mut self, b: u8) -> bool {
        let save = self.at;
        self.lws();
        if self.eat(b) {
            self.lws();
            true
        } else {
            self.at = save;
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(&f) {
            self.at += 1;
        }
        &self.s[start..self.at]
    }
    fn token(&mut self) -> bool {
        !self.take_while(is_token_char).is_empty()
    }
    /// A quoted-string, quoted-pairs included (any octet but CR/LF after `\`).
    fn quoted(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'\r' | b'\n') | None => return false,
                    Some(_) => self.at += 1,
                },
                b'\r' | b'\n' => return false,
                _ => {}
            }
        }
        false
    }
    /// `"[" IPv6address "]"` (loosely: hex digits, colons, dots).
    fn ipv6_reference(&mut self) -> bool {
        self.eat(b'[')
            && !self
                .take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                .is_empty()
            && self.eat(b']')
    }

    /// `*( SEMI generic-param )`, then the end of the value (or a comma
    /// when `list`). Returns false on an empty or malformed parameter.
    fn params(&mut self, list: bool) -> bool {
        loop {
            self.lws();
            if self.done() || (list && self.peek() == Some(b',')) {
                return true;
            }
            if !self.eat(b';') {
                return false;
            }
            self.lws();
            if !self.token() {
                return false;
            }
            if self.sep(b'=') {
                let ok = if self.peek() == Some(b'"') {
                    self.quoted()
                } else if self.peek() == Some(b'[') {
                    self.ipv6_reference() // maddr
                } else {
                    // A token, or a host: `received` carries a bare IPv6
                    // address (RFC 3261 §20.42), colons and all.
                    !self
                        .take_while(|b| is_token_char(b) || b == b':')
                        .is_empty()
                };
                if !ok {
                    return false;
                }
            }
        }
    }
}

/// Whether `uri` is `scheme ":" …` with an RFC 3986 scheme and no LWS.
fn absolute_uri(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &uri[..colon];
    !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && colon + 1 < uri.len()
        && uri.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// The scheme of a URI, lower-cased.
pub fn scheme(uri: &str) -> Option<String> {
    absolute_uri(uri.as_bytes()).then(|| {
        uri.split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    })
}

/// RFC 3261 `unreserved` (alphanum and mark).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `1*( allowed / escaped )`: at least one character, every `%` followed
/// by two hex digits.
fn escaped_run(s: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if allowed(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    !s.is_empty()
}

/// `host [":" port]`: a hostname (labels of alphanumerics and inner
/// hyphens, an optional final dot), an IPv4 address (digits and dots
/// are labels too), or an IPv6 reference; a port of 1 to 5 digits, at
/// most 65535.
fn hostport(s: &[u8]) -> bool {
    let port = if s.first() == Some(&b'[') {
        let Some(close) = s.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &s[close + 1..]
    } else {
        let colon = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        let host = &s[..colon];
        let host = host.strip_suffix(b".").unwrap_or(host);
        let labels_ok = !host.is_empty()
            && host.split(|&b| b == b'.').all(|l| {
                !l.is_empty()
                    && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                    && l[0] != b'-'
                    && l[l.len() - 1] != b'-'
            });
        if !labels_ok {
            return false;
        }
        &s[colon..]
    };
    match port.strip_prefix(b":") {
        None => port.is_empty(),
        Some(p) => {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some()
        }
    }
}

/// A URI that is `sip:` or `sips:` must be one by [`sip_uri`] (a From,
/// To or Contact naming a SIP URI that is not one would be written into
/// the gateway's own Request-URIs); other schemes are left to their own
/// rules.
fn sip_uri_if_sip(uri: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(uri) else {
        return false;
    };
    match scheme(text).as_deref() {
        Some("sip" | "sips") => sip_uri(text),
        _ => true,
    }
}

/// A `sip:` or `sips:` URI as RFC 3261 §25.1 writes it: `[userinfo "@"]
/// hostport *(";" uri-parameter) ["?" headers]`, where the user is one or
/// more unreserved, escaped or user-unreserved characters, the password
/// likewise, and every parameter a non-empty name with an optional
/// non-empty value. `sip:@@@:::` is not one.
pub fn sip_uri(uri: &str) -> bool {
    let b = uri.as_bytes();
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return false;
    };
    if !matches!(uri[..colon].to_ascii_lowercase().as_str(), "sip" | "sips") {
        return false;
    }
    let rest = &b[colon + 1..];
    // The userinfo ends at the first '@' (neither user nor password may
    // hold one unescaped).
    let rest = match rest.iter().position(|&c| c == b'@') {
        Some(at) => {
            let info = &rest[..at];
            let (user, password) = match info.iter().position(|&c| c == b':') {
                Some(c) => (&info[..c], Some(&info[c + 1..])),
                None => (info, None),
            };
            let user_ok = escaped_run(user, |c| unreserved(c) || b"&=+$,;?/".contains(&c));
            let password_ok = password.is_none_or(|p| {
                p.is_empty() || escaped_run(p, |c| unreserved(c) || b"&=+$,".contains(&c))
            });
            if !user_ok || !password_ok {
                return false;
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    let (before_headers, headers) = match rest.iter().position(|&c| c == b'?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut parts = before_headers.split(|&c| c == b';');
    if !hostport(parts.next().unwrap_or_default()) {
        return false;
    }
    let paramchar = |c: u8| unreserved(c) || b"[]/:&+$".contains(&c);
    let params_ok = parts.all(|p| {
        let (name, value) = match p.iter().position(|&c| c == b'=') {
            Some(e) => (&p[..e], Some(&p[e + 1..])),
            None => (p, None),
        };
        escaped_run(name, paramchar) && value.is_none_or(|v| escaped_run(v, paramchar))
    });
    let headers_ok = headers.is_none_or(|h| {
        h.split(|&c| c == b'&').all(|hv| {
            let hchar = |c: u8| unreserved(c) || b"[]/?:+$".contains(&c);
            match hv.iter().position(|&c| c == b'=') {
                Some(e) => {
                    escaped_run(&hv[..e], hchar)
                        && (e + 1 == hv.len() || escaped_run(&hv[e + 1..], hchar))
                }
                None => false,
            }
        })
    });
    params_ok && headers_ok
}

/// One Via field value (may hold several comma-separated via-parms).
pub fn via(value: &str) -> bool {
    let mut s = Scan::new(value);
    loop {
        s.lws();
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport
        if !(s.token() && s.sep(b'/') && s.token() && s.sep(b'/') && s.token()) {
            return false;
        }
        // LWS sent-by = host [ COLON port ]
        if !s.lws() {
            return false;
        }
        let host = if s.peek() == Some(b'[') {
            s.ipv6_reference()
        } else {
            !s.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                .is_empty()
        };
        if !host {
            return false;
        }
        if s.sep(b':') && s.take_while(|b| b.is_ascii_digit()).is_empty() {
            return false;
        }
        if !s.params(true) {
            return false;
        }
        if s.done() {
            return true;
        }
        // A comma: another via-parm must follow.
        s.eat(b',');
    }
}

/// Splits a list-valued field at top-level commas (outside quotes and
/// `<…>`). `None` when quotes or brackets do not balance.
fn split_list(value: &str) -> Option<Vec<&str>> {
    let b = value.as_bytes();
    let (mut parts, mut start, mut i, mut angle) = (Vec::new(), 0, 0, false);
    while i < b.len() {
        match b[i] {
            b'"' if !angle => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return None;
                }
            }
            b'<' if !angle => angle = true,
            b'>' if angle => angle = false,
            b',' if !angle => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if angle {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

/// One `name-addr / addr-spec` value with its parameters (RFC 3261 §20.10,
/// §25.1): a display name quoted or made of tokens; a URI in `<…>` with
/// no LWS inside; an addr-spec without `<>` must not hold `,`, `?` or `;`
/// (they would be ambiguous with the field's own parameters).
fn name_addr(value: &str) -> bool {
    let mut s = Scan::new(value.trim());
    if s.peek() == Some(b'"') {
        if !s.quoted() {
            return false;
        }
        s.lws();
    } else if value.contains('<') {
        // *(token LWS) before '<' (RFC 4475 §3.1.1.6: LWS before '<' may be
        // missing).
        loop {
            s.lws();
            if s.peek() == Some(b'<') || !s.token() {
                break;
            }
        }
    }
    if s.eat(b'<') {
        let uri = s.take_while(|b| b != b'>');
        if !s.eat(b'>') || !absolute_uri(uri) || !sip_uri_if_sip(uri) {
            return false;
        }
    } else {
        if s.at != 0 {
            return false; // a display name without <URI>
        }
        let uri = s.take_while(|b| !matches!(b, b';' | b' ' | b'\t'));
        if !absolute_uri(uri) || uri.contains(&b'?') || uri.contains(&b',') || !sip_uri_if_sip(uri)
        {
            return false;
        }
    }
    s.params(false)
}

/// A single-valued name-addr field (From, To).
pub fn name_addr_field(value: &str) -> bool {
    name_addr(value)
}

/// A list of name-addr values (Contact — `*` allowed — Route, Record-Route).
pub fn name_addr_list(value: &str, star: bool) -> bool {
    if star && value.trim() == "*" {
        return true;
    }
    split_list(value).is_some_and(|parts| parts.iter().all(|p| name_addr(p)))
}

/// An RFC 3261 `SIP-date` (RFC 1123 form, "GMT" only).
pub fn date(value: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = value.split(' ').collect();
    let [day, dd, mon, yyyy, time, "GMT"] = parts[..] else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let t: Vec<&str> = time.split(':').collect();
    day.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(dd, 2)
        && MONTHS.contains(&mon)
        && digits(yyyy, 4)
        && t.len() == 3
        && t.iter().all(|p| digits(p, 2))
}

/// Max-Forwards: `1*DIGIT`, at most 255 (leading zeros allowed).
pub fn max_forwards(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.trim_start_matches('0').len() <= 3
        && value.parse::<u32>().is_ok_and(|n| n <= 255)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sip_uris_by_rfc_3261_section_25() {
        for good in [
            "sip:gw@127.0.0.1",
            "sip:127.0.0.1:5060",
            "sips:alice@example.com;transport=tls",
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:user;par=u%40example.net@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "sip:[2001:db8::10]:5070",
            "sip:alice:@example.com",
            "sip:example.com.;lr",
            "SIP:4420@10.0.0.5:5060;user=phone",
        ] {
            assert!(sip_uri(good), "{good}");
        }
        for bad in [
            "sip:@@@:::",
            "sip:",
            "sip:@example.com",
            "sip:alice@",
            "sip:alice@exa mple.com",
            "sip:alice@example.com:",
            "sip:alice@example.com:123456",
            "sip:alice@example.com:99999",
            "sip:alice@-example.com",
            "sip:alice@example..com",
            "sip:alice@example.com;",
            "sip:alice@example.com;=x",
            "sip:al%zzice@example.com",
            "sip:alice@[::1",
            "sip:alice@example.com?",
            "tel:+44",
        ] {
            assert!(!sip_uri(bad), "{bad}");
        }
        // A From, To or Contact naming a SIP URI must hold one: the
        // gateway writes Contacts into its own Request-URIs (found by
        // the b2bua_call fuzz target: `<sips:[ua@198.51.100.9>`).
        assert!(!name_addr_list("<sips:[ua@198.51.100.9>", true));
        assert!(!name_addr_field("<sip:@@@:::>;tag=1"));
        assert!(name_addr_field("\"Alice\" <sip:201@10.0.0.2>;tag=ft"));
        assert!(name_addr_field("<tel:+4420;phone-context=x>"));
    }

    use super::*;

    #[test]
    fn via_takes_lws_and_refuses_empty_parameters() {
        assert!(via(
            "SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK776;rport"
        ));
        assert!(via("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw"));
        assert!(via(
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
        ));
        assert!(via("SIP/2.0/TLS [2001:db8::1]:5061;received=[2001:db8::2]"));
        assert!(via(
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::2;rport=5060"
        ));
        assert!(via(
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;x=\"a,b\", SIP/2.0/TCP 10.0.0.2"
        ));
        assert!(!via("SIP/2.0/UDP 192.0.2.15;;,;,,"));
        assert!(!via("SIP/2.0/UDP"));
        assert!(!via("SIP/2.0/UDP h;branch="));
        assert!(!via("SIP/2.0/UDP h, "));
    }

    #[test]
    fn name_addr_accepts_rfc4475_valid_forms_and_refuses_invalid_ones() {
        for ok in [
            "<sip:a@b>;tag=1",
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
            "caller<sip:caller@example.com>;tag=323",
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;p=\"x\";tag=_t",
            "isbn:2983792873",
            "<http://www.example.com>;tag=3234233",
        ] {
            assert!(name_addr_field(ok), "{ok}");
        }
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Watson, Thomas <sip:t.watson@example.org>",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b",
            "",
        ] {
            assert!(!name_addr_field(bad), "{bad}");
        }
        assert!(name_addr_list("*", true));
        assert!(name_addr_list("<sip:a@b>, \"x, y\" <sip:c@d>;q=0.5", false));
        assert!(!name_addr_list("*", false));
    }

    #[test]
    fn dates_are_gmt_and_max_forwards_fits_a_byte() {
        assert!(date("Sat, 15 Oct 2005 04:44:56 GMT"));
        assert!(!date("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(max_forwards("0068") && max_forwards("255") && max_forwards("0"));
        assert!(!max_forwards("300") && !max_forwards("") && !max_forwards("-1"));
    }
}
