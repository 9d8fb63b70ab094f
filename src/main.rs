//! `herd`: dispatch only. The shim is dispatched before anything else so that the process that
//! calls libcontainer (which forks) has never started a thread.

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__shim") {
        std::process::exit(herd::worker::runtime::shim::main(&argv[2..]));
    }
    eprintln!("herd: commands are being built");
    std::process::exit(2);
}
