//! Benches of the runtime on a small CNN with batch norm (see `benchmarks/fixture.rs`).
//!
//! Run with `cargo bench --bench bench_main` after sourcing the `modeconn.env` that
//! `scripts/setup.sh` writes (it sets `ORT_DYLIB_PATH`).

mod benchmarks;

use criterion::criterion_main;

criterion_main!(benchmarks::runtime::benches);
