//! The `sluice` command line, shared by the `sluice` and `kubectl-sluice` executables: the product's
//! commands (`sluice::app`) plus, with the default feature `dev-tools`, the developer commands
//! (`sim`, `demo`, `bench`, `e2e` from `sluice_e2e::cli`). Wiring only.
use clap::{Args, CommandFactory, Parser, Subcommand};
use sluice::app::GlobalArgs;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery for Kubernetes that closes the GitOps loop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Product(sluice::app::Command),
    #[cfg(feature = "dev-tools")]
    #[command(flatten)]
    Dev(sluice_e2e::cli::Command),
    /// Print a shell completion script: `source <(sluice completion bash)`, or save it where your
    /// shell loads completions from (zsh: a file `_sluice` on $fpath; fish: ~/.config/fish/completions/).
    Completion(CompletionArgs),
}

#[derive(Args)]
struct CompletionArgs {
    shell: clap_complete::Shell,
}

/// Writes the completion script for `sluice` (kubectl completes plugins through its own mechanism).
fn print_completion(shell: clap_complete::Shell) -> std::process::ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
    std::process::ExitCode::SUCCESS
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli: Cli = sluice::app::parse_cli();
    match cli.command {
        Command::Product(command) => {
            let controller = command.is_controller();
            sluice::app::execute(cli.global, "info", controller, sluice::app::run(command))
        }
        Command::Completion(args) => print_completion(args.shell),
        #[cfg(feature = "dev-tools")]
        Command::Dev(command) => {
            let level = command.default_log_level();
            sluice::app::execute(cli.global, level, false, sluice_e2e::cli::run(command))
        }
    }
}
