//! Small helpers shared across modules, each too small for a crate.

pub mod cidr;
pub mod fsutil;
pub mod mqtt_net;
pub mod mqtt_url;
pub mod time;
