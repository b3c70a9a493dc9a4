//! Runs the `septa-bench recommend` / `septa-bench history` measurements (the same code,
//! `bench/src/learn_core.rs`) without building the data-plane crates.
//!
//! `cargo run --release -p septa-control --example learn_bench -- recommend [ZONES HOSTS RECORDS]`
//! `cargo run --release -p septa-control --example learn_bench -- history [RECORDS BATCH]`

#[path = "../../bench/src/learn_core.rs"]
mod learn_core;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map(|s| s.parse()).transpose()?.unwrap_or(d))
    };
    let line = match args.first().map(String::as_str) {
        Some("recommend") => learn_core::recommend_line(
            num(1, 50)?,
            u8::try_from(num(2, 100)?)?,
            num(3, 1_000_000)?,
            1,
        )?,
        Some("history") => {
            learn_core::history_line(50, 100, num(1, 1_000_000)?, num(2, 10_000)?, 1)?
        }
        _ => {
            return Err(
                "usage: learn_bench recommend [ZONES HOSTS RECORDS] | history [RECORDS BATCH]"
                    .into(),
            );
        }
    };
    println!("{line}");
    Ok(())
}
