//! `sluice`: see `sluice::app`.
fn main() -> std::process::ExitCode {
    sluice::app::main()
}
