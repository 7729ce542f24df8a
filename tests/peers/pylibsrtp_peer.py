#!/usr/bin/python3
"""libsrtp peer for pbxlink's interop tests, through python3-pylibsrtp.

usage: pylibsrtp_peer.py OP SUITE KEY_B64 IN OUT
  OP     protect | unprotect | protect_rtcp | unprotect_rtcp
  SUITE  AES_CM_128_HMAC_SHA1_80 | AES_CM_128_HMAC_SHA1_32 | AEAD_AES_128_GCM
IN and OUT hold packets as records: 2-byte big-endian length, then the bytes.
A packet the library refuses is written as an empty record, so OUT always has
as many records as IN; the reason goes to stderr.
"""
import base64
import struct
import sys

from pylibsrtp import Error, Policy, Session

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


def records(data):
    i = 0
    while i < len(data):
        (n,) = struct.unpack_from(">H", data, i)
        yield data[i + 2 : i + 2 + n]
        i += 2 + n


def main():
    op, suite, key_b64, path_in, path_out = sys.argv[1:6]
    inbound = op.startswith("unprotect")
    policy = Policy(
        key=base64.b64decode(key_b64),
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=PROFILES[suite],
    )
    policy.window_size = 1024
    session = Session(policy=policy)
    fn = getattr(session, op)
    out = bytearray()
    refused = 0
    with open(path_in, "rb") as f:
        for pkt in records(f.read()):
            try:
                res = fn(pkt)
            except Error as e:
                print(f"{op}: refused: {e}", file=sys.stderr)
                refused += 1
                res = b""
            out += struct.pack(">H", len(res)) + res
    with open(path_out, "wb") as f:
        f.write(out)
    print(f"{op} {suite}: refused {refused}", file=sys.stderr)


if __name__ == "__main__":
    main()
