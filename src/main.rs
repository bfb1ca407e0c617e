//! `crm-import`: a thin binary over the library; see `crm_import::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

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
