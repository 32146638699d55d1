//! What proves Sluice and is never shipped in the controller image: the end-to-end scenarios and their
//! targets (`scenarios`), `sluice demo`, the benchmarks' drivers (`bench`), the test kit (`kit`), and
//! the developer commands that expose them (`cli`: `sluice sim|demo|bench|e2e`).
pub mod bench;
pub mod cli;
pub mod demo;
pub mod fuzz;
pub mod kit;
pub mod scenarios;
