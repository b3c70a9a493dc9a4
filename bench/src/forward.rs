//! Placeholder: filled by the issue that owns this benchmark.

/// Arguments (none yet).
#[derive(clap::Args)]
pub struct Args {}

/// Not built yet: fails loudly rather than print a fake result.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the forward benchmark is not built yet")
}
