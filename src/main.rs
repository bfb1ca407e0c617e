//! `crm-import`: a thin binary over the library; see `crm_import::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Records are allocated on the parse thread and freed on the validate and apply threads;
/// glibc's malloc serves that producer-consumer pattern through locked arenas (a sixth of a
/// re-import's CPU time, a third of `check`'s parse thread). jemalloc's thread caches take
/// remote frees cheaply, and unlike mimalloc it kept the peak RSS under the 128 MiB bound.
///
/// It also serves SQLite's own allocations (the crate's `unprefixed_malloc_on_supported_platforms`
/// feature makes it the process's `malloc`): glibc's took 11 % of SQLite's writer thread in a
/// fresh import, and kept an arena per worker thread, each holding its own peak.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
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
