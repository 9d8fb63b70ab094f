//! OCI distribution, shared by the worker (pulls) and the master (its image cache, platform
//! lookups for the scheduler): registry settings, platform selection, a verifying puller.

pub mod puller;
pub mod select;
pub mod settings;

pub use puller::{Fetched, Mirror, PullError, Puller};
pub use settings::{Credentials, RegistrySettings};
