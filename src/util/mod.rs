//! Small helpers shared across modules, each too small for a crate.

pub mod fsutil;
pub mod time;
