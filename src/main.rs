//! `herd`: dispatch only. The shim and the exec helper are dispatched before anything else so
//! that the process that calls libcontainer (which forks) has never started a thread.

use clap::Parser;
use herd::cli::{Cli, Command};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__shim") {
        std::process::exit(herd::worker::runtime::shim::main(&argv[2..]));
    }
    if argv.get(1).map(String::as_str) == Some("__exec") {
        std::process::exit(herd::worker::runtime::exec::main(&argv[2..]));
    }
    // One TLS provider for the process (reqwest builds its configs from the default).
    herd::pki::install_provider();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Up(_) | Command::Master(_) | Command::Worker(_) | Command::Firstboot(_)
    ) {
        // Client verbs behave like Unix tools: `herd get pods | head` ends quietly instead of
        // panicking on EPIPE. Servers keep Rust's ignored SIGPIPE (a closed log pipe must not
        // kill an agent and, with it, its pods' supervision).
        // SAFETY: no other thread exists yet; this only restores the default disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    herd::logging::init(cli.global.verbose);
    // Local file and systemctl work: no async runtime needed.
    let local = match &cli.command {
        Command::Install(a) => Some(herd::install::install(a)),
        Command::Uninstall(a) => Some(herd::install::uninstall(a)),
        _ => None,
    };
    if let Some(result) = local {
        if let Err(e) = result {
            herd::cli::print_error(&e);
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async move {
        match &cli.command {
            Command::Up(a) => herd::up::up(a).await,
            Command::Master(a) => herd::up::master(a).await,
            Command::Worker(a) => herd::up::worker(a).await,
            _ => herd::cli::run(cli).await,
        }
    });
    if let Err(e) = result {
        herd::cli::print_error(&e);
        std::process::exit(herd::worker::kernel::exit_code(&e));
    }
}
