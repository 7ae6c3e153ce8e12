//! A deterministic day of synthetic traffic through the routing planner, comparing round-robin
//! (with and without the residency filter), nearest-only and carbon-aware routing. Prints the
//! table and writes it to bench-results/routing-sim.md.
//!
//! `cargo run -p policy --example route_sim --release [-- REQUESTS SEED OUT_PATH]`
#![allow(clippy::disallowed_methods)] // an example reads its arguments and writes a file

use policy::route::sim::{run, to_markdown};

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    let out = args.next().unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results/routing-sim.md").to_string());
    let results = run(requests, seed);
    let md = to_markdown(&results, requests, seed);
    print!("{md}");
    if let Err(e) = std::fs::write(&out, &md) {
        eprintln!("cannot write {out}: {e}");
        std::process::exit(1);
    }
    eprintln!("wrote {out}");
}
