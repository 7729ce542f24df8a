//! The onboarding wizard's settings: the model (steps, forms, checks,
//! the configuration overlay) is the sans-IO `pbxlink-onboarding` crate;
//! this module keeps them in the state directory (`store`).

pub mod store;

pub use pbxlink_onboarding::*;
