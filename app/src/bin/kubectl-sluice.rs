//! `kubectl-sluice`: the kubectl plugin name of `sluice` (`kubectl sluice get rollout web`).
fn main() -> std::process::ExitCode {
    sluice_app::main()
}
