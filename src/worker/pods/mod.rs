//! Pod lifecycle on the worker: pure decisions (`restart`, `phase`, `containers`) and the I/O
//! shell that drives the runtime (`container`, `manager`).

pub mod container;
pub mod containers;
pub mod manager;
pub mod phase;
pub mod restart;
