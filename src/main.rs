//! `crm-import`: a thin binary over the library; see `crm_import::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Records are allocated on the parse thread and freed on the validate and apply threads;
/// glibc's malloc serves that producer-consumer pattern through locked arenas (a sixth of a
/// re-import's CPU time, a third of `check`'s parse thread). jemalloc's thread caches take
/// remote frees cheaply, and unlike mimalloc it kept the peak RSS under the 128 MiB bound.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // suppaftp traces every control line, PASS included: never below debug for it.
    if let Ok(cap) = "suppaftp=debug".parse() {
        filter = filter.add_directive(cap);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person; logs collected from a service stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = crm_import::cli::Cli::parse();
    crm_import::cli::run(cli).await
}
