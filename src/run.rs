//! A run (SPEC §6): recorded from start to end, holding its pipeline's lease so that no
//! pipeline runs twice at once — in this process or another on the same database — and
//! stoppable between chunks.

use std::time::Duration;

use crate::pipeline::{self, Options};
use crate::report::RunReport;
use crate::source::Files;
use crate::store::{LEASE_SECS, RunStart, Store, StoreError, Trigger};

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
}

/// Runs a job and records it. Errors are only the database's own; everything about the
/// data, the sources or an overlap is in the report.
pub async fn run_import<S: Store>(
    store: &S,
    job: &Job<'_>,
    options: Options,
) -> Result<Finished, StoreError> {
    let mut scope = store.scope(job.org, job.source).await?;
    let run_id = match store
        .start_run(scope.org_id, job.pipeline, job.trigger)
        .await?
    {
        RunStart::Started(id) => id,
        RunStart::Refused {
            run_id,
            holder,
            since,
        } => {
            let mut report = RunReport::default();
            report.refuse(format!(
                "pipeline {:?} is already running (run {holder}, started {since}); this start was refused",
                job.pipeline.unwrap_or_default()
            ));
            let status = report.status.as_str();
            store
                .finish_run(run_id, status, 0, &report.to_json())
                .await?;
            return Ok(Finished { run_id, report });
        }
    };
    scope.run_id = Some(run_id);
    let import = pipeline::import_files(store, &scope, job.files, options);
    tokio::pin!(import);
    let renew_every = Duration::from_secs(LEASE_SECS as u64 / 3);
    let report = loop {
        tokio::select! {
            report = &mut import => break report,
            () = tokio::time::sleep(renew_every) => {
                if let Err(e) = store.renew_run(run_id).await {
                    tracing::warn!(run_id, error = %e, "cannot renew the run's lease");
                }
            }
        }
    };
    store
        .finish_run(
            run_id,
            report.status.as_str(),
            report.records,
            &report.to_json(),
        )
        .await?;
    Ok(Finished { run_id, report })
}
