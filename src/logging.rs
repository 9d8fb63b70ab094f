//! Logging setup in one place: tracing to stderr (journald picks it up under systemd),
//! `RUST_LOG` overrides, chatty dependencies quietened.

/// rumqttd logs every client disconnect (a board rebooting) at error level, so it is off by
/// default; `RUST_LOG=rumqttd=info` brings it back.
pub fn init(verbose: u8) {
    let base = match verbose {
        0 => "info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let default = format!(
        "{base},rumqttd=off,rumqttc=warn,libcontainer=warn,libcgroups=warn,hyper=warn,reqwest=warn"
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
