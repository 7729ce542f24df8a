//! Running the gateway from its admin page and from the cloud platform
//! (SPEC §7): the machine behind one trait (LAN settings, restart,
//! resets), the log on disk (plain and structured), call traces, and downloads behind temporary
//! links.

pub mod bundle;
pub mod commands;
pub mod console;
pub mod host;
pub mod log_file;
pub mod parts;
pub mod state;
pub mod structured_log;
pub mod support_ssh;
pub mod trace;
pub mod update;
pub mod versions;
