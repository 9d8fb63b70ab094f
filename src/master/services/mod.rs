//! The master's side of Services: address allocation (pure) and distribution of services,
//! endpoints and ingresses to every worker.

pub mod alloc;
pub mod publish;
