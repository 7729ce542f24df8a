//! Size limits on what the SIP stack accepts. Generous for real PBXs and
//! clouds (INVITEs with large SDP stay under 8 KiB), tight enough that a
//! hostile peer cannot make the gateway buffer much.

/// Largest whole message (head and body).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest head: start line and headers, up to the blank line.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one message (after unfolding).
pub const MAX_HEADERS: usize = 128;
/// Longest single header field (after unfolding).
pub const MAX_LINE: usize = 8 * 1024;
/// Longest run of keep-alive CRLFs tolerated before a message.
pub const MAX_LEADING_CRLF: usize = 64;
