/* Reports the installed libsrtp2 header's view of the structs our Rust FFI
 * mirrors by hand, so a test can fail loudly if a libsrtp upgrade moves them. */
#include <stddef.h>
#include <srtp2/srtp.h>

size_t pbxlink_srtp_policy_size(void) { return sizeof(srtp_policy_t); }
size_t pbxlink_srtp_crypto_policy_size(void) { return sizeof(srtp_crypto_policy_t); }
size_t pbxlink_srtp_policy_offset_key(void) { return offsetof(srtp_policy_t, key); }
size_t pbxlink_srtp_policy_offset_window_size(void) { return offsetof(srtp_policy_t, window_size); }
size_t pbxlink_srtp_policy_offset_allow_repeat_tx(void) { return offsetof(srtp_policy_t, allow_repeat_tx); }
size_t pbxlink_srtp_policy_offset_next(void) { return offsetof(srtp_policy_t, next); }
size_t pbxlink_srtp_max_trailer_len(void) { return SRTP_MAX_TRAILER_LEN; }
