//! `sluice`: see the `sluice_app` library.
fn main() -> std::process::ExitCode {
    sluice_app::main()
}
