//! Runs the `septa-bench learn-feed` measurement (the same code, `bench/src/learn_feed.rs`)
//! without building the ML crates: the real worker forwarding short TCP connections with and
//! without the learning feed (flow history) behind its event ring, side by side.
//!
//! `cargo run --release -p septa-control --example learn_feed -- [FLOWS ROUNDS REPEAT]`

#[path = "../../bench/src/learn_feed.rs"]
mod learn_feed;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map(|s| s.parse()).transpose()?.unwrap_or(d))
    };
    println!(
        "{}",
        learn_feed::learn_feed_line(num(0, 8192)?, num(1, 5)?, num(2, 8)?)?
    );
    Ok(())
}
