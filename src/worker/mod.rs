//! The worker: joins a master over HTTP, then runs the pods the master assigns over MQTT.

pub mod images;
pub mod pods;
pub mod runtime;
