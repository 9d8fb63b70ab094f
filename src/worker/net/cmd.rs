//! Runs the network tools (`ip`, `nft`, `nsenter`) with input on stdin, bounded in time.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::NetError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `prog args`, feeding `stdin`; returns stdout, or an error with stderr.
pub fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let what = || format!("{prog} {}", args.join(" "));
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Command {
            command: what(),
            message: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    // Output is read by a thread so a full pipe cannot stall the child; the wait is bounded.
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(r) => r.map_err(|e| NetError::Command {
            command: what(),
            message: e.to_string(),
        })?,
        Err(_) => {
            // SAFETY: kill(2) with a pid we spawned and have not reaped (the thread reaps it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(NetError::Command {
                command: what(),
                message: format!("no answer within {}s", TIMEOUT.as_secs()),
            });
        }
    };
    if !out.status.success() {
        let detail = match stdin {
            Some(i) => format!(
                "{}\ninput:\n{i}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        };
        return Err(NetError::Command {
            command: what(),
            message: detail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
