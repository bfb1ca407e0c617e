//! `daemon` and `serve`: the long-running commands, with the HTTP API on a listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::args::Db;
use super::open_store;
use super::output::{Failure, say};
use crate::api::{self, Api};
use crate::console;
use crate::daemon::Daemon;
use crate::notify::Smtp;
use crate::run::shutdown_signal;
use crate::secret::SecretKey;
use crate::store::AnyStore;
use crate::telemetry;

/// `daemon`: every pipeline of the folder on its schedule, until SIGTERM or Ctrl-C.
pub async fn daemon(
    dir: &Path,
    db: &Db,
    listen: Option<SocketAddr>,
    smtp: Option<Smtp>,
) -> Result<(), Failure> {
    let store = Arc::new(open_store(db).await?);
    let daemon = Daemon::new(store.clone(), dir, smtp.clone());
    load_pipelines(&daemon, Some(dir)).await?;
    let names = daemon.names();
    say(&format!(
        "daemon: {} pipeline(s) from {}: {}{}\n",
        names.len(),
        dir.display(),
        names.join(", "),
        if smtp.is_some() {
            "; reports by e-mail"
        } else {
            "; no mail server: reports are not mailed"
        }
    ));
    if let Some(addr) = listen {
        let mut api = Api::new(store);
        api.daemon = Some(daemon.clone());
        listen_http(addr, api).await?;
    }
    daemon.serve(shutdown_signal()).await;
    say("daemon: stopped\n");
    Ok(())
}

/// `serve`: the HTTP API without schedules, until SIGTERM or Ctrl-C.
pub async fn serve(
    addr: SocketAddr,
    db: &Db,
    pipelines: Option<&Path>,
    body_limit_mib: u32,
) -> Result<(), Failure> {
    let store = Arc::new(open_store(db).await?);
    let mut api = Api::new(store.clone());
    api.body_limit = body_limit_mib as usize * 1024 * 1024;
    let daemon = match pipelines {
        Some(dir) => Daemon::new(store, dir, None),
        None => Daemon::without_files(store, None),
    };
    load_pipelines(&daemon, pipelines).await?;
    api.daemon = Some(daemon.clone());
    listen_http(addr, api).await?;
    shutdown_signal().await;
    daemon.shutdown().await;
    say("stopped\n");
    Ok(())
}

/// Loads the folder and the console's pipelines, with the key to their passwords: a
/// pipeline with mistakes is reported and skipped; an unreadable folder or a malformed
/// `CRM_SECRET_KEY` is a configuration error.
async fn load_pipelines(daemon: &Daemon<AnyStore>, dir: Option<&Path>) -> Result<(), Failure> {
    if let Some(key) = SecretKey::from_env().map_err(|e| Failure::config(e.to_string()))? {
        daemon.set_secret_key(key);
    }
    let mut failed = daemon.reload().map_err(|e| {
        Failure::config(format!(
            "cannot read the pipelines folder {}: {e}",
            dir.unwrap_or(Path::new(".")).display()
        ))
    })?;
    failed.extend(daemon.load_stored().await?);
    for errors in &failed {
        eprintln!("crm-import: {errors}");
    }
    Ok(())
}

/// Serves the API on `addr` in the background, with metrics.
async fn listen_http(addr: SocketAddr, mut api: Api<AnyStore>) -> Result<(), Failure> {
    match telemetry::install() {
        Ok(handle) => api.metrics = Some(handle),
        Err(e) => eprintln!("crm-import: metrics are off: {e}"),
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::config(format!("cannot listen on {addr}: {e}")))?;
    say(&format!(
        "listening on http://{}\n",
        listener.local_addr().unwrap_or(addr)
    ));
    let api = Arc::new(api);
    let app = api::routes(api.clone()).merge(console::router(api));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    Ok(())
}
