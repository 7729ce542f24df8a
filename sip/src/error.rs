//! Why a message was rejected: the framing's reasons and the parse's.
//! Below framing, normalisation and parsing alike, so each names the
//! other's reasons without importing it.

use crate::limits::{MAX_HEAD, MAX_MESSAGE};

/// Why framing failed. On a stream framing cannot resume: close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// No blank line within the head limit.
    #[error("message head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A datagram without the blank line that ends a head.
    #[error("no blank line after the headers")]
    NoBlankLine,
    /// A stream message without Content-Length.
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// Content-Length is not a number, or more than a datagram holds.
    #[error("bad Content-Length")]
    BadContentLength,
    /// Head and body exceed the message limit.
    #[error("message exceeds {MAX_MESSAGE} bytes")]
    MessageTooLarge,
    /// More keep-alive CRLFs than any peer sends.
    #[error("too many CRLFs before a message")]
    TooManyCrlf,
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Framing failed (size, Content-Length, no blank line).
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The head is not UTF-8.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// Nothing before the first CRLF.
    #[error("missing start line")]
    MissingStartLine,
    /// The start line is not a request or status line.
    #[error("malformed start line")]
    BadStartLine,
    /// A header line without a colon or with an invalid name.
    #[error("malformed header field")]
    BadHeader,
    /// A header field over the line limit.
    #[error("header field too long")]
    HeaderTooLong,
    /// More header fields than the limit.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The SIP version is not 2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The Request-URI is malformed (brackets, LWS, escaped headers).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Request-URI's scheme is not sip, sips or tel (answered 416).
    #[error("unsupported URI scheme")]
    UnsupportedUriScheme,
    /// A header field that must appear once appears more often.
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    /// A header field the stack acts on breaks its RFC 3261 grammar.
    #[error("malformed {0} header")]
    BadField(&'static str),
    /// A mandatory header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// CSeq is not `number method` with a 31-bit number.
    #[error("malformed CSeq")]
    BadCSeq,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The body is not as long as Content-Length says.
    #[error("body length does not match Content-Length")]
    BodyLength,
}
