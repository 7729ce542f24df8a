//! The PBX's users and roles as the gateway holds them, pure: a push in, a
//! report and the new directory out. The store, the user-config API and
//! the CSTA link around it live in the control plane.

pub mod directory;

pub use directory::{
    Directory, Entry, PbxUser, PushError, PushReport, Refusal, Role, RoleRef, Status, default_roles,
};
