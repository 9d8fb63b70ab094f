//! The per-container shim process (`herd __shim`). (runtime helper: stub.)

/// Entry point, called from `main` before any tokio runtime exists.
pub fn main(_args: &[String]) -> i32 {
    eprintln!("herd __shim: not built yet");
    2
}
