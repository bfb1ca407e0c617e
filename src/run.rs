//! A run (SPEC §6): recorded from start to end, holding its pipeline's lease so that no
//! pipeline runs twice at once — in this process or another on the same database — and
//! stoppable between chunks.

use std::sync::{Arc, Mutex};

use crate::pipeline::{self, Options, Resume};
use crate::report::{ReportError, RunReport};
use crate::results::{self, Results};
use crate::source::Files;
use crate::store::{RunStart, RunStatus, Scope, Store, StoreError, Trigger};
use tokio_util::sync::CancellationToken;

/// What to import, for whom, and who asked.
pub struct Job<'a> {
    /// The pipeline's name; `None` for a plain `import` (no lease: nothing to overlap with).
    pub pipeline: Option<&'a str>,
    pub org: &'a str,
    pub source: &'a str,
    pub files: &'a Files,
    pub trigger: Trigger,
}

/// A run that ended (or was refused), as recorded.
#[derive(Debug, Clone)]
pub struct Finished {
    pub run_id: i64,
    pub report: RunReport,
    /// Why the `--results` file could not be written, if it could not.
    pub results_failed: Option<String>,
}

/// Runs a job and records it. Errors are only the database's own before the run began;
/// everything about the data, the sources, an overlap or recording the end is in the report.
pub async fn run_import<S: Store>(
    store: &S,
    job: &Job<'_>,
    mut options: Options,
) -> Result<Finished, StoreError> {
    match begin(store, job.org, job.source, job.pipeline, job.trigger).await? {
        Begun::Refused(finished) => Ok(*finished),
        Begun::Started(scope) => {
            let run_id = scope.run_id.unwrap_or_default();
            let results = results_of(&mut options);
            let import = pipeline::import_files(store, &scope, job.files, options);
            let mut report = holding_lease(store, run_id, import).await;
            let results_failed = close_results(store, run_id, &results, &report).await;
            if let Err(e) = end(store, run_id, &report).await {
                // The counts stay those of the run: its row has them, chunk by chunk, and the
                // next start closes it.
                if report.error.is_none() {
                    report.fail(ReportError::general(
                        e.code(),
                        format!("the end of run {run_id} could not be recorded: {e}"),
                        None,
                    ));
                }
            }
            Ok(Finished {
                run_id,
                report,
                results_failed,
            })
        }
    }
}

/// Why a run cannot be continued with `--resume` («Продолжить»).
#[derive(Debug)]
pub enum NotResumable {
    /// Not a run of the organization.
    Unknown,
    /// It did not end with an error or a stop.
    Ended(RunStatus),
    /// Its stored report cannot be read.
    Unreadable(serde_json::Error),
    Store(StoreError),
}

/// What continuing run `run_id` of `org` skips: how far it committed each file.
pub async fn resumable<S: Store>(
    store: &S,
    org: &str,
    run_id: i64,
) -> Result<Resume, NotResumable> {
    let (row, report) = store
        .run(run_id, Some(org))
        .await
        .map_err(NotResumable::Store)?
        .ok_or(NotResumable::Unknown)?;
    if !matches!(row.status, RunStatus::Error | RunStatus::Interrupted) {
        return Err(NotResumable::Ended(row.status));
    }
    match report {
        Some(text) => Resume::from_report(run_id, &text).map_err(NotResumable::Unreadable),
        // A run that died before its end was recorded: nothing of it is known committed.
        None => Ok(Resume {
            run_id,
            origin: run_id,
            files: Vec::new(),
        }),
    }
}

/// The run's results: those the caller set up (with a `--results` file), else kept only.
pub fn results_of(options: &mut Options) -> results::Shared {
    options
        .results
        .get_or_insert_with(|| Arc::new(Mutex::new(Results::kept())))
        .clone()
}

/// Closes the run's results and keeps their last part; why the `--results` file could not
/// be written, if it could not.
pub async fn close_results<S: Store>(
    store: &S,
    run_id: i64,
    results: &results::Shared,
    report: &RunReport,
) -> Option<String> {
    let closed = results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .close(report);
    if let Some((part, bytes)) = closed.last
        && let Err(e) = store.keep_results(run_id, part, &bytes).await
    {
        tracing::warn!(run_id, part, error = %e, "cannot keep the run's results");
    }
    closed.file.err().map(|e| e.to_string())
}

/// A run that may go ahead (its scope carries the run id), or the recorded refusal.
pub enum Begun {
    Started(Scope),
    Refused(Box<Finished>),
}

/// Records the start of a run and takes the pipeline's lease; a refused start is recorded
/// with its report.
pub async fn begin<S: Store>(
    store: &S,
    org: &str,
    source: &str,
    pipeline: Option<&str>,
    trigger: Trigger,
) -> Result<Begun, StoreError> {
    let mut scope = store.scope(org, source).await?;
    match store.start_run(scope.org_id, pipeline, trigger).await? {
        RunStart::Started(id) => {
            scope.run_id = Some(id);
            Ok(Begun::Started(scope))
        }
        RunStart::Refused {
            run_id,
            holder,
            since,
            lease_until,
            process,
        } => {
            let until = chrono::DateTime::from_timestamp(lease_until, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| lease_until.to_string());
            let by = process.map(|p| format!(", {p}")).unwrap_or_default();
            let mut report = RunReport::default();
            report.refuse(format!(
                "pipeline {:?} is already running (run {holder}, started {since}{by}); this start was refused. \
                 A crashed run on this host is taken over at the next start; one on another host keeps \
                 its lease until {until} unless it renews it",
                pipeline.unwrap_or_default()
            ));
            end(store, run_id, &report).await?;
            Ok(Begun::Refused(Box::new(Finished {
                run_id,
                report,
                results_failed: None,
            })))
        }
    }
}

/// Drives `work` while renewing the run's lease. The work is polled during a renewal too:
/// a chunk holds the database's write lock, and a renewal waiting on it while the chunk
/// was not polled stalled both until the busy timeout (30 s) failed the renewal.
pub async fn holding_lease<S: Store, T>(
    store: &S,
    run_id: i64,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let renew_every = store.lease() / 3;
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(renew_every) => {}
        }
        let renewal = store.renew_run(run_id);
        tokio::pin!(renewal);
        let renewed = tokio::select! {
            renewed = &mut renewal => renewed,
            done = &mut work => {
                // Let the statement finish rather than cut it off mid-way.
                log_renewal(run_id, renewal.await);
                return done;
            }
        };
        log_renewal(run_id, renewed);
    }
}

fn log_renewal(run_id: i64, renewed: Result<(), StoreError>) {
    match renewed {
        Ok(()) => tracing::debug!(run_id, "lease renewed"),
        Err(e) => tracing::warn!(run_id, error = %e, "cannot renew the run's lease"),
    }
}

/// Records the end of a run with its report and releases its lease.
pub async fn end<S: Store>(store: &S, run_id: i64, report: &RunReport) -> Result<(), StoreError> {
    store
        .finish_run(
            run_id,
            report.status.into(),
            report.records,
            &report.to_json(),
        )
        .await
}

/// Cancelled on Ctrl-C or SIGTERM: the run finishes its chunk and ends `interrupted`.
pub fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::warn!("stopping after the current chunk");
        token.cancel();
    });
    stop
}

/// Ctrl-C, or SIGTERM where there is one: what stops a run, the daemon and the server.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
