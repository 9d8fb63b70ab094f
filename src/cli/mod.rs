//! Command line: argument tree, kubeconfig-format client config, HTTP client, and the client
//! verbs with their kubectl-style output.
//!
//! `main.rs` parses [`Cli`], runs `up`/`master`/`worker` itself and hands every other command
//! to [`run`]; errors from `run` are printed with [`print_error`].

pub mod args;
pub mod client;
pub mod commands;
pub mod kind;
pub mod kubeconfig;
pub mod resource;
pub mod table;
pub mod validate;
pub mod workload;

pub use args::{
    ApplyArgs, Cli, Command, DeleteArgs, DescribeArgs, DrainArgs, GetArgs, GlobalArgs,
    ImageCommand, ImageImportArgs, ImageLsArgs, InstallArgs, InstallRole, LogsArgs, MasterArgs,
    NodeArgs, NodeCommand, NodeRmArgs, OutputFormat, RolloutCommand, RolloutHistoryArgs,
    RolloutStatusArgs, RolloutTarget, RolloutUndoArgs, ScaleArgs, SetCommand, SetImageArgs,
    TokenCommand, TokenCreateArgs, TokenLsArgs, TokenRevokeArgs, TokenRole, UninstallArgs, UpArgs,
    VersionArgs, WorkerArgs,
};
pub use kubeconfig::{write_admin_config, ConfigError};

/// Runs a client verb. `up`, `master` and `worker` are servers that `main` runs itself.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Up(_) | Command::Master(_) | Command::Worker(_) => {
            anyhow::bail!("up, master and worker are run by main, not by cli::run")
        }
        Command::Install(_) | Command::Uninstall(_) => {
            anyhow::bail!("install and uninstall are run by main, not by cli::run")
        }
        Command::Firstboot(a) => crate::firstboot::main(a).await,
        Command::Broker(args::BrokerCommand::Config(a)) => {
            let snippet = crate::master::maintenance::broker_config(&a.data_dir, &a.out)?;
            print!("{snippet}");
            Ok(())
        }
        Command::Apply(a) => commands::apply::run(a, g).await,
        Command::Get(a) => commands::get::run(a, g).await,
        Command::Describe(a) => commands::describe::run(a, g).await,
        Command::Delete(a) => commands::delete::run(a, g).await,
        Command::Logs(a) => commands::logs::run(a, g).await,
        Command::Scale(a) => commands::scale::run(a, g).await,
        Command::Set(SetCommand::Image(a)) => commands::set::run_image(a, g).await,
        Command::Rollout(c) => commands::rollout::run(c, g).await,
        Command::Cordon(a) => commands::node::run(a, true, g).await,
        Command::Uncordon(a) => commands::node::run(a, false, g).await,
        Command::Drain(a) => commands::drain::run(a, g).await,
        Command::Image(ImageCommand::Import(a)) => commands::image::import(a).await,
        Command::Image(ImageCommand::Ls(a)) if a.local || a.data_dir.is_some() => {
            commands::image::ls(a).await
        }
        Command::Image(ImageCommand::Ls(a)) => commands::image::run_cache_ls(a, g).await,
        Command::Image(ImageCommand::Push(a)) => commands::image::run_push(a, g).await,
        Command::Image(ImageCommand::Prune(a)) => commands::image::run_prune(a, g).await,
        Command::Image(ImageCommand::Pull(a)) => commands::image::pull(a).await,
        Command::Token(TokenCommand::Create(a)) => commands::token::run(a, g).await,
        Command::Token(TokenCommand::Ls(a)) => commands::token::run_ls(a, g).await,
        Command::Token(TokenCommand::Revoke(a)) => commands::token::run_revoke(a, g).await,
        Command::Node(NodeCommand::Rm(a)) => commands::node::run_rm(a, g).await,
        Command::Version(a) => commands::version::run(a, g).await,
        Command::Validate(a) => validate::run(a),
    }
}

/// The text to show for an error from [`run`], or `None` when the details were already printed
/// (the exit status is all that is left to report). Server errors print bare, as kubectl's
/// `Error from server (NotFound): ...`; everything else as `error: ...`.
pub fn error_message(err: &anyhow::Error) -> Option<String> {
    if err.is::<commands::delete::Silent>() {
        return None;
    }
    if let Some(client::ApiError::Status(s)) = err.downcast_ref::<client::ApiError>() {
        return Some(client::render_status(s));
    }
    Some(format!("error: {err:#}"))
}

/// Prints [`error_message`] to stderr; `main` then exits with status 1.
pub fn print_error(err: &anyhow::Error) {
    if let Some(msg) = error_message(err) {
        eprintln!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Status;

    #[test]
    fn server_errors_print_bare_and_others_with_an_error_prefix() {
        let e: anyhow::Error = client::ApiError::Status(Box::new(Status::failure(
            404,
            "NotFound",
            "pods \"x\" not found",
        )))
        .into();
        assert_eq!(
            error_message(&e).as_deref(),
            Some("Error from server (NotFound): pods \"x\" not found")
        );
        let e: anyhow::Error = ConfigError::NoConfig.into();
        assert_eq!(
            error_message(&e).as_deref(),
            Some("error: no config: pass --config or set HERD_CONFIG or run herd up")
        );
        let e: anyhow::Error = commands::delete::Silent.into();
        assert_eq!(error_message(&e), None);
    }
}
