//! `import`, `run` and `check`: the commands that read exports.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::args::{Db, Outputs};
use super::open_store;
use super::output::{Exit, Failure, say, throughput};
use crate::config;
use crate::layout::Layout;
use crate::model::{Email, Record, Validated};
use crate::notify::{self, Smtp};
use crate::observe::ProgressBars;
use crate::pipeline::{self, Found, Options, Resume};
use crate::report::{ReportError, RunReport};
use crate::results::Results;
use crate::run::{self, Finished, Job, NotResumable, run_import, stop_on_signals};
use crate::source::{Files, Sources};
use crate::store::{RunFilter, Store, StoreError, Trigger};

/// Which failed run a run continues (`--resume`).
pub enum Resuming {
    No,
    /// `import --resume RUN_ID`.
    Run(i64),
    /// `run --resume`: the pipeline's last run.
    LastFailed,
}

/// `import`: the files in the order given, as a manual run without a pipeline.
pub async fn import_files(
    job: &Job<'_>,
    db: &Db,
    outputs: Outputs,
    chunk_size: usize,
    layout: Arc<Layout>,
    resume: Resuming,
) -> Result<(), Failure> {
    let options = Options {
        chunk_size,
        layout,
        observer: Arc::new(ProgressBars::new()),
        stop: stop_on_signals(),
        ..Options::default()
    };
    import(job, db, outputs, options, None, resume).await
}

/// `--layout FILE`, checked (every mistake listed, exit 2); the native format without it.
pub fn layout(path: Option<&Path>) -> Result<Arc<Layout>, Failure> {
    match path {
        None => Ok(Layout::native()),
        Some(path) => Layout::load(path)
            .map(Arc::new)
            .map_err(|errors| Failure::config(errors.to_string())),
    }
}

/// The failed run to continue, as its stored report tells how far it got; a run that is not
/// the organization's (or pipeline's), or did not fail, is a usage error.
async fn resumed<S: Store>(
    store: &S,
    job: &Job<'_>,
    resume: Resuming,
) -> Result<Option<Arc<Resume>>, Failure> {
    let run_id = match resume {
        Resuming::No => return Ok(None),
        Resuming::Run(id) => id,
        Resuming::LastFailed => {
            let filter = RunFilter {
                org: Some(job.org.to_owned()),
                pipeline: job.pipeline.map(str::to_owned),
                limit: 1,
            };
            let last = store.runs(&filter).await.map_err(store_failed)?;
            let Some(last) = last.first() else {
                return Err(Failure::config(format!(
                    "--resume: pipeline {:?} has not run yet: there is nothing to continue",
                    job.pipeline.unwrap_or_default()
                )));
            };
            last.id
        }
    };
    match run::resumable(store, job.org, run_id).await {
        Ok(resume) => Ok(Some(Arc::new(resume))),
        Err(NotResumable::Store(e)) => Err(store_failed(e)),
        Err(NotResumable::Unknown) => Err(Failure::config(format!(
            "--resume {run_id}: organization {} has no such run",
            job.org
        ))),
        Err(NotResumable::Ended(status)) => Err(Failure::config(format!(
            "--resume {run_id}: run {run_id} ended {status}, not with an error: there is nothing to continue"
        ))),
        Err(NotResumable::Unreadable(e)) => Err(Failure::import(format!(
            "run {run_id}'s stored report cannot be read: {e}"
        ))),
    }
}

fn store_failed(e: StoreError) -> Failure {
    Failure::import(e.to_string())
}

/// Runs a job, prints its summary, mails and writes its report; the exit code follows the
/// report's error.
async fn import(
    job: &Job<'_>,
    db: &Db,
    outputs: Outputs,
    mut options: Options,
    notify: Option<(Smtp, &[String])>,
    resume: Resuming,
) -> Result<(), Failure> {
    let store = open_store(db).await?;
    options.resume = resumed(&store, job, resume).await?;
    if let Some(path) = &outputs.results {
        let results = Results::with_file(path).map_err(|e| Failure::config(e.to_string()))?;
        options.results = Some(Arc::new(Mutex::new(results)));
    }
    let started = Instant::now();
    let (run_id, report, results_failed) = match run_import(&store, job, options).await {
        Ok(Finished {
            run_id,
            report,
            results_failed,
        }) => (Some(run_id), report, results_failed),
        Err(e) => {
            let mut report = RunReport::default();
            report.fail(ReportError::general(e.code(), e.to_string(), None));
            (None, report, None)
        }
    };
    say(&report.summary());
    say(&throughput(report.records, started.elapsed().as_secs_f64()));
    if let (Some((smtp, to)), Some(run_id)) = (notify, run_id) {
        let name = job.pipeline.unwrap_or("import");
        let note = notify::mail_run(&store, &smtp, to, name, run_id, &report).await;
        say(&format!("  mail: {note}\n"));
    }
    if let (Some(e), Some(path)) = (results_failed, &outputs.results) {
        return Err(Failure::import(format!(
            "cannot write the results to {}: {e}",
            path.display()
        )));
    }
    if let Some(path) = outputs.report_json {
        std::fs::write(&path, report.to_json()).map_err(|e| {
            Failure::import(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    match &report.error {
        None => Ok(()),
        Some(e) if e.configuration => Err(Failure::reported(Exit::Config)),
        Some(_) => Err(Failure::reported(Exit::ImportError)),
    }
}

/// `run`: a pipeline file now («Запустить сейчас»).
pub async fn run_pipeline(
    path: &Path,
    db: &Db,
    outputs: Outputs,
    smtp: Option<Smtp>,
    resume: Resuming,
) -> Result<(), Failure> {
    let pipeline = config::load(path).map_err(|errors| Failure::config(errors.to_string()))?;
    let job = Job {
        pipeline: Some(&pipeline.name),
        org: &pipeline.organization,
        source: &pipeline.source,
        files: &pipeline.files,
        trigger: Trigger::Manual,
    };
    let options = Options {
        chunk_size: pipeline.chunk_size,
        layout: pipeline.layout.clone(),
        observer: Arc::new(ProgressBars::new()),
        stop: stop_on_signals(),
        ..Options::default()
    };
    let notify = smtp.map(|smtp| (smtp, pipeline.notify.as_slice()));
    import(&job, db, outputs, options, notify, resume).await
}

/// Records `check --layout` prints as they will be imported, so a person sees the mapping
/// work before a real run.
const SHOWN_RECORDS: u64 = 3;

/// One record as `check` shows it: where it is, then each field it will import.
fn shown(record: &Validated) -> String {
    use std::fmt::Write as _;
    let p = &record.position;
    let mut out = format!(
        "record {} at {}:{}",
        p.record_index.unwrap_or(0),
        p.file,
        p.line
    );
    let field = |out: &mut String, name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "\n  {name}: {value}");
    };
    match &record.body {
        Err(_) => out.push_str(" (has an error, below)"),
        Ok(Record::Premise(premise)) => {
            let _ = write!(out, ": premise {}", premise.id);
            field(&mut out, "address", &premise.address);
            field(&mut out, "number", &premise.number);
            field(&mut out, "kind", &premise.kind.as_str());
            let optional = [
                ("floor", premise.floor.map(|v| v.to_string())),
                ("entrance", premise.entrance.map(|v| v.to_string())),
                ("rooms", premise.rooms.map(|v| v.to_string())),
                ("area", premise.area.map(|v| v.to_string())),
                ("cadastral_number", premise.cadastral_number.clone()),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    field(&mut out, name, &value);
                }
            }
            for a in &premise.accounts {
                let mut account = format!("{} number {}", a.id, a.number);
                if let Some(area) = a.area {
                    let _ = write!(account, ", area {area}");
                }
                if let Some(residents) = a.residents {
                    let _ = write!(account, ", residents {residents}");
                }
                field(&mut out, "account", &account);
            }
        }
        Ok(Record::Client(client)) => {
            let _ = write!(out, ": client {}", client.id);
            field(&mut out, "name", &client.name);
            if let Some(phone) = &client.phone {
                field(&mut out, "phone", phone);
            }
            if let Email::Valid(email) = &client.email {
                field(&mut out, "email", email);
            }
            for (premise, role) in &client.premises {
                field(
                    &mut out,
                    "premise",
                    &format!("{premise} ({})", role.as_str()),
                );
            }
            for account in &client.accounts {
                field(&mut out, "account", account);
            }
        }
    }
    out.push('\n');
    out
}

/// `check`: parses and validates without writing, listing every problem; with a layout of
/// its own, the first records as they will be imported.
pub async fn check(files: &[String], layout: &Arc<Layout>) -> Result<(), Failure> {
    let show = if layout.native { 0 } else { SHOWN_RECORDS };
    let mut errors = 0u64;
    let mut warnings = 0u64;
    let mut records = 0u64;
    let stdout = std::io::stdout();
    let mut checked = 0usize;
    let mut sources = Sources::new(&Files::local(files));
    for address in files {
        let names = match sources.expand(address).await {
            Ok(names) => names,
            Err(e) => {
                say(&format!("{e} [{}]\n", e.code()));
                errors += 1;
                continue;
            }
        };
        for name in names {
            checked += 1;
            let input = match sources.open(&name).await {
                Ok(opened) => opened.split().0,
                Err(e) => {
                    say(&format!("{e} [{}]\n", e.code()));
                    errors += 1;
                    continue;
                }
            };
            let options = Options {
                layout: layout.clone(),
                ..Options::default()
            };
            let mut seen = 0u64;
            records += pipeline::check_input(input, options, |found| {
                let mut out = stdout.lock();
                let _ = match found {
                    Found::Record(record) => {
                        seen += 1;
                        if seen > show {
                            return;
                        }
                        write!(out, "{}", shown(record))
                    }
                    Found::Error(problem) => {
                        errors += 1;
                        writeln!(out, "error: {problem}")
                    }
                    Found::Warning(problem, 1) => {
                        warnings += 1;
                        writeln!(out, "warning: {problem}")
                    }
                    Found::Warning(problem, times) => {
                        warnings += times;
                        writeln!(out, "warning: {problem} ({times} times in this record)")
                    }
                    Found::MoreWarnings(n) => {
                        warnings += n;
                        writeln!(
                            out,
                            "warning: {n} more warning(s) of other kinds in this record"
                        )
                    }
                };
            })
            .await;
        }
    }
    sources.close().await;
    say(&format!(
        "checked {records} records in {checked} file(s): {errors} error(s), {warnings} warning(s)\n"
    ));
    if errors == 0 {
        Ok(())
    } else {
        Err(Failure::reported(Exit::ImportError))
    }
}

/// `export`: the organization's data as NDJSON on standard output.
pub async fn export(org: &str, archived: bool, db: &Db) -> Result<(), Failure> {
    let store = open_store(db).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let known = store.export(org, archived, &mut out).await?;
    if !known {
        return Err(Failure::config(format!(
            "organization {org:?} is not known in this database"
        )));
    }
    out.flush()
        .map_err(|e| Failure::import(format!("writing the export failed: {e}")))
}
