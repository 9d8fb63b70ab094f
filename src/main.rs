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
    let cli = Cli::parse();
    herd::logging::init(cli.global.verbose);
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
        std::process::exit(1);
    }
}
