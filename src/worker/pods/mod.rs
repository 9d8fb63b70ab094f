//! Pod lifecycle on the worker: pure decisions (`restart`, `phase`, `containers`, `security`,
//! `probes::machine`) and the I/O shell that drives the runtime (`container`, `manager`,
//! `probes::runner`).

pub mod adopt;
pub mod container;
pub mod containers;
pub mod image;
pub mod init;
pub mod manager;
pub mod phase;
pub mod probes;
pub mod restart;
pub mod security;
