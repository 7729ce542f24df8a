//! Digest authentication of SIP requests (RFC 3261 §22.4; the MD5 and
//! SHA-256 algorithms of RFC 7616 as RFC 8760 brings them to SIP), sans-IO:
//! the gateway as the server that challenges the PBX trunk's INVITEs, and
//! the client answer to a challenge. Time is an input (Unix seconds).
//!
//! Nonces are stateless: the time they were made and an HMAC of it under
//! a secret the gateway draws at start-up, so any nonce the gateway made
//! in the last [`NONCE_LIFETIME`] seconds is accepted and nothing is kept
//! per challenge. Nonce counts are not tracked (a replayed INVITE within
//! the lifetime would pass the check; it is also a retransmission to the
//! transaction layer).

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds a nonce stays good; a later one is answered `stale=true`.
pub const NONCE_LIFETIME: u64 = 300;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// MD5, what every PBX speaks.
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Its name in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// By `algorithm` parameter (absent means MD5).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(data.as_bytes()).to_vec(),
        };
        hex(&bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user name and password (the password never in Debug).
#[derive(Clone)]
pub struct Credentials {
    /// The user name (the vendor's PBX trunk uses `officelinkmv5000`).
    pub username: String,
    /// The password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

/// A `Digest` header's parameters (WWW-Authenticate, Authorization and
/// their proxy forms), by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// A parameter's value (quotes removed).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a `Digest` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Another scheme (Basic, …) or none.
    #[error("not a Digest credential or challenge")]
    NotDigest,
    /// A parameter that is not `name=value` or an unterminated quote.
    #[error("malformed Digest parameters")]
    Malformed,
    /// A parameter the computation needs is missing.
    #[error("Digest parameter {0} missing")]
    Missing(&'static str),
    /// An algorithm or qop this side does not do.
    #[error("Digest {0} not supported")]
    Unsupported(&'static str),
}

/// Reads `Digest name=value, …` (RFC 3261 §25.1 auth-param grammar).
pub fn parse(value: &str) -> Result<Params, DigestError> {
    let value = value.trim_start();
    let rest = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("digest") => rest,
        _ => return Err(DigestError::NotDigest),
    };
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return Err(DigestError::Malformed);
        }
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        let mut v = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(DigestError::Malformed),
                    Some('"') => break,
                    Some('\\') => v.push(chars.next().ok_or(DigestError::Malformed)?),
                    Some(c) => v.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                v.push(c);
                chars.next();
            }
        }
        params.push((name, v));
        if params.len() > 32 {
            return Err(DigestError::Malformed);
        }
    }
    Ok(Params(params))
}

/// The `response` for `method` and `uri` (RFC 7616 §3.4.1; without qop,
/// RFC 2069's form).
fn response(
    algorithm: Algorithm,
    creds: &Credentials,
    realm: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>, // (nc, cnonce) with qop=auth
) -> String {
    let ha1 = Zeroizing::new(algorithm.hash(&format!(
        "{}:{realm}:{}",
        creds.username,
        creds.password.as_str()
    )));
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => algorithm.hash(&format!(
            "{}:{nonce}:{nc}:{cnonce}:auth:{ha2}",
            ha1.as_str()
        )),
        None => algorithm.hash(&format!("{}:{nonce}:{ha2}", ha1.as_str())),
    }
}

/// Host and port of a SIP URI (no scheme, user, parameters or headers).
fn host_port(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split([';', '?', '>']).next().unwrap_or_default()
}

/// Whether the credential's `uri` names the request's target: the
/// Request-URI itself, or (as sipp and some PBXs send it) the same host
/// and port without the user part. The response is computed over the
/// `uri` given, so credentials made for another host never pass.
fn same_target(uri: &str, request_uri: &str) -> bool {
    uri == request_uri || {
        let (a, b) = (host_port(uri), host_port(request_uri));
        !a.is_empty() && a.eq_ignore_ascii_case(b)
    }
}

/// What a request's credentials come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The right user, password and a fresh nonce of ours.
    Accepted,
    /// No usable credentials for this realm: challenge.
    Missing,
    /// Right, but on a nonce past its lifetime: challenge with `stale=true`.
    Stale,
    /// Another user, a wrong password, or a nonce not ours: refuse.
    Refused,
}

/// The server side: challenges and checks credentials against one user.
#[derive(Clone)]
pub struct Challenger {
    realm: String,
    algorithm: Algorithm,
    secret: Zeroizing<[u8; 32]>,
    creds: Credentials,
}

impl std::fmt::Debug for Challenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Challenger(realm {:?}, {}, {:?})",
            self.realm,
            self.algorithm.name(),
            self.creds
        )
    }
}

impl Challenger {
    /// Checks `creds` in `realm`; nonces are signed with `secret` (drawn
    /// by the caller from the OS's random source).
    pub fn new(realm: &str, algorithm: Algorithm, creds: Credentials, secret: [u8; 32]) -> Self {
        Self {
            realm: realm.to_owned(),
            algorithm,
            secret: Zeroizing::new(secret),
            creds,
        }
    }

    fn seal(&self, stamp: u64) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_ref()).expect("any key length");
        mac.update(&stamp.to_be_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    fn nonce(&self, now: u64) -> String {
        format!("{now:x}.{}", self.seal(now))
    }

    /// The nonce's age in seconds, if it is one of ours.
    fn nonce_age(&self, now: u64, nonce: &str) -> Option<u64> {
        let (stamp, tag) = nonce.split_once('.')?;
        let stamp = u64::from_str_radix(stamp, 16).ok()?;
        let ok: bool = self.seal(stamp).as_bytes().ct_eq(tag.as_bytes()).into();
        ok.then(|| now.saturating_sub(stamp))
    }

    /// A `WWW-Authenticate` value with a fresh nonce.
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"{}",
            self.realm,
            self.nonce(now),
            self.algorithm.name(),
            if stale { ", stale=true" } else { "" }
        )
    }

    /// Checks an `Authorization` value sent with `method` (the request's
    /// method) to `request_uri`.
    pub fn verify(
        &self,
        now: u64,
        method: &str,
        request_uri: &str,
        authorization: Option<&str>,
    ) -> Verdict {
        let Some(p) = authorization.and_then(|a| parse(a).ok()) else {
            return Verdict::Missing;
        };
        if p.get("realm") != Some(self.realm.as_str()) {
            return Verdict::Missing;
        }
        let algorithm = p
            .get("algorithm")
            .map_or(Some(Algorithm::Md5), Algorithm::from_name);
        let (Some(nonce), Some(uri), Some(given)) =
            (p.get("nonce"), p.get("uri"), p.get("response"))
        else {
            return Verdict::Missing;
        };
        if algorithm != Some(self.algorithm) || !same_target(uri, request_uri) {
            return Verdict::Refused;
        }
        let qop = match (p.get("qop"), p.get("nc"), p.get("cnonce")) {
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                Some((nc, cnonce))
            }
            (None, _, _) => None,
            _ => return Verdict::Refused,
        };
        let Some(age) = self.nonce_age(now, nonce) else {
            return Verdict::Refused;
        };
        let want = response(
            self.algorithm,
            &self.creds,
            &self.realm,
            method,
            uri,
            nonce,
            qop,
        );
        let right = p.get("username") == Some(self.creds.username.as_str())
            && bool::from(want.as_bytes().ct_eq(given.to_ascii_lowercase().as_bytes()));
        match (right, age > NONCE_LIFETIME) {
            (false, _) => Verdict::Refused,
            (true, true) => Verdict::Stale,
            (true, false) => Verdict::Accepted,
        }
    }
}

/// The `Authorization` value answering `challenge` (a WWW-Authenticate or
/// Proxy-Authenticate value) for `method` to `uri`, the `nc`th use of the
/// nonce, with `cnonce` drawn by the caller.
pub fn answer(
    challenge: &str,
    creds: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Result<String, DigestError> {
    let p = parse(challenge)?;
    let realm = p.get("realm").ok_or(DigestError::Missing("realm"))?;
    let nonce = p.get("nonce").ok_or(DigestError::Missing("nonce"))?;
    let algorithm = match p.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(a).ok_or(DigestError::Unsupported("algorithm"))?,
    };
    let auth = match p.get("qop") {
        None => false,
        Some(q) if q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => true,
        Some(_) => return Err(DigestError::Unsupported("qop")),
    };
    let nc = format!("{nc:08x}");
    let r = response(
        algorithm,
        creds,
        realm,
        method,
        uri,
        nonce,
        auth.then_some((nc.as_str(), cnonce)),
    );
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}",
        creds.username,
        algorithm.name()
    );
    if auth {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = p.get("opaque") {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    #[test]
    fn rfc_2617_md5_example_computes_its_response() {
        // RFC 2617 §3.5 (HTTP's example; the computation SIP uses).
        let r = response(
            Algorithm::Md5,
            &creds("Mufasa", "Circle Of Life"),
            "testrealm@host.com",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc_7616_sha256_example_computes_its_response() {
        // RFC 7616 §3.9.1.
        let r = response(
            Algorithm::Sha256,
            &creds("Mufasa", "Circle of Life"),
            "http-auth@example.org",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    fn gateway() -> Challenger {
        Challenger::new(
            "pbxlink",
            Algorithm::Md5,
            creds("officelinkmv5000", "s3cret-Pass"),
            [7; 32],
        )
    }

    #[test]
    fn the_right_answer_to_a_challenge_is_accepted_and_others_are_not() {
        let gw = gateway();
        let uri = "sip:4420@10.0.0.5:5060";
        let challenge = gw.challenge(1_000, false);
        assert!(challenge.starts_with("Digest realm=\"pbxlink\", nonce=\""));
        let good = answer(
            &challenge,
            &creds("officelinkmv5000", "s3cret-Pass"),
            "INVITE",
            uri,
            1,
            "abc",
        )
        .unwrap();
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some(&good)),
            Verdict::Accepted
        );
        assert_eq!(
            gw.verify(1_010, "BYE", uri, Some(&good)),
            Verdict::Refused,
            "another method"
        );
        assert_eq!(
            gw.verify(1_010, "INVITE", "sip:1@10.0.0.6:5060", Some(&good)),
            Verdict::Refused,
            "another host"
        );
        let hostonly = answer(
            &challenge,
            &creds("officelinkmv5000", "s3cret-Pass"),
            "INVITE",
            "sip:10.0.0.5:5060",
            1,
            "abc",
        )
        .unwrap();
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some(&hostonly)),
            Verdict::Accepted,
            "the uri without the user part, as sipp sends it"
        );
        assert_eq!(
            gw.verify(1_000 + NONCE_LIFETIME + 1, "INVITE", uri, Some(&good)),
            Verdict::Stale
        );
        let wrong = answer(
            &challenge,
            &creds("officelinkmv5000", "guess"),
            "INVITE",
            uri,
            1,
            "abc",
        )
        .unwrap();
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some(&wrong)),
            Verdict::Refused
        );
        let stranger = answer(
            &challenge,
            &creds("admin", "s3cret-Pass"),
            "INVITE",
            uri,
            1,
            "abc",
        )
        .unwrap();
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some(&stranger)),
            Verdict::Refused
        );
        // A nonce another gateway (another secret) made.
        let other = Challenger::new(
            "pbxlink",
            Algorithm::Md5,
            creds("officelinkmv5000", "s3cret-Pass"),
            [8; 32],
        );
        let forged = answer(
            &other.challenge(1_000, false),
            &creds("officelinkmv5000", "s3cret-Pass"),
            "INVITE",
            uri,
            1,
            "abc",
        )
        .unwrap();
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some(&forged)),
            Verdict::Refused
        );
        assert_eq!(gw.verify(1_010, "INVITE", uri, None), Verdict::Missing);
        assert_eq!(
            gw.verify(1_010, "INVITE", uri, Some("Basic dXNlcjpwYXNz")),
            Verdict::Missing
        );
    }

    #[test]
    fn parameters_are_read_with_quotes_escapes_and_spaces() {
        let p = parse(
            "Digest  username=\"a\\\"b\",realm = \"r, s\" , nonce=\"n\", uri=\"sip:x\", response=\"0f\", algorithm=MD5, qop=auth, nc=00000001",
        )
        .unwrap();
        assert_eq!(p.get("username"), Some("a\"b"));
        assert_eq!(p.get("realm"), Some("r, s"));
        assert_eq!(p.get("qop"), Some("auth"));
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(parse("Basic abc"), Err(DigestError::NotDigest));
        assert_eq!(parse("Digest realm=\"open"), Err(DigestError::Malformed));
        assert_eq!(parse("Digest =x"), Err(DigestError::Malformed));
        assert!(format!("{:?}", gateway()).contains("<password>"));
        assert!(!format!("{:?}", gateway()).contains("s3cret"));
    }
}
