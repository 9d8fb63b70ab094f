//! The systemctl seam: the real one runs `systemctl`, tests use a recording fake.

use std::path::Path;
use std::process::Command;

use super::InstallError;

pub trait Systemd {
    /// Whether systemd manages this machine (PID 1), so systemctl can work at all.
    fn is_running(&self) -> bool;
    /// Runs `systemctl ARGS`, failing with its stderr.
    fn systemctl(&mut self, args: &[&str]) -> Result<(), InstallError>;
}

/// The machine's own systemd.
#[derive(Debug, Default)]
pub struct RealSystemd;

impl Systemd for RealSystemd {
    /// sd_booted(3)'s test: this directory exists only when systemd is PID 1.
    fn is_running(&self) -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    fn systemctl(&mut self, args: &[&str]) -> Result<(), InstallError> {
        let command = format!("systemctl {}", args.join(" "));
        let out =
            Command::new("systemctl")
                .args(args)
                .output()
                .map_err(|e| InstallError::Systemctl {
                    command: command.clone(),
                    problem: e.to_string(),
                })?;
        if out.status.success() {
            return Ok(());
        }
        Err(InstallError::Systemctl {
            command,
            problem: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Records the commands instead of running them.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeSystemd {
    pub running: bool,
    pub calls: Vec<String>,
}

#[cfg(test)]
impl Systemd for FakeSystemd {
    fn is_running(&self) -> bool {
        self.running
    }

    fn systemctl(&mut self, args: &[&str]) -> Result<(), InstallError> {
        self.calls.push(args.join(" "));
        Ok(())
    }
}
