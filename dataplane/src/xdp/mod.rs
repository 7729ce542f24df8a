//! The kernel-bypass pieces of the AF_XDP backend: the XDP program that
//! diverts relay traffic, the AF_XDP socket it lands in, and the
//! Ethernet/IPv4/UDP framing the worker reads and writes. The worker loop
//! is `worker::xdp`.

pub mod frame;
pub mod program;
pub mod socket;
