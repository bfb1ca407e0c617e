//! Metrics (Prometheus text at `/metrics`): every name and label lives here. Without an
//! installed recorder (a one-off `import`) the macros are no-ops.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::observe::Observer;
use crate::report::RunReport;

/// Records applied, by `entity` (premise, account, client) and `outcome`.
pub const RECORDS: &str = "crm_import_records_total";
/// Raw bytes read from sources.
pub const BYTES_READ: &str = "crm_import_bytes_read_total";
/// Runs by `pipeline` and `status` (ok, error, interrupted, refused).
pub const RUNS: &str = "crm_import_runs_total";
/// Wall time of runs, by `pipeline`.
pub const RUN_SECONDS: &str = "crm_import_run_duration_seconds";
/// Time a stage waited on the next one (backpressure), by `stage`: `parse` waiting for
/// validation, `validate` waiting for apply. A stage that waits a lot is not the bottleneck.
pub const STAGE_WAIT: &str = "crm_import_stage_wait_seconds";

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// Counts of a finished run.
pub fn record_run(pipeline: &str, report: &RunReport, took: Duration) {
    let pipeline = pipeline.to_owned();
    metrics::counter!(RUNS, "pipeline" => pipeline.clone(), "status" => report.status.as_str())
        .increment(1);
    metrics::histogram!(RUN_SECONDS, "pipeline" => pipeline).record(took.as_secs_f64());
    let c = &report.counts;
    let rows = [
        ("premise", "created", c.premise.created),
        ("premise", "updated", c.premise.updated),
        ("premise", "unchanged", c.premise.unchanged),
        ("account", "created", c.account.created),
        ("account", "updated", c.account.updated),
        ("account", "unchanged", c.account.unchanged),
        ("client", "created", c.client.created),
        ("client", "updated", c.client.updated),
        ("client", "unchanged", c.client.unchanged),
        ("client", "merged", c.client.merged),
        ("client", "external_id_added", c.client.external_id_added),
    ];
    for (entity, outcome, n) in rows {
        metrics::counter!(RECORDS, "entity" => entity, "outcome" => outcome).increment(n);
    }
}

/// A stage waited this long to hand a chunk on.
pub fn stage_waited(stage: &'static str, waited: Duration) {
    metrics::histogram!(STAGE_WAIT, "stage" => stage).record(waited.as_secs_f64());
}

/// Feeds the bytes counter from a run.
pub struct Metered;

impl Observer for Metered {
    fn bytes_read(&self, n: u64) {
        metrics::counter!(BYTES_READ).increment(n);
    }
}

/// The process's peak resident set (VmHWM), where the system tells it (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
