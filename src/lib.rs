//! herd: a lightweight edge orchestrator. The binary (`main.rs`) only dispatches; everything
//! lives in this library so tests and benches reach it.

pub mod api;
pub mod cli;
pub mod firstboot;
pub mod install;
pub mod logging;
pub mod master;
pub mod oci;
pub mod pki;
pub mod proto;
pub mod up;
pub mod util;
pub mod worker;
