//! Wires the stages: read, parse and validate run on their own threads, apply runs on the async
//! task, and bounded channels between them keep at most `QUEUE` batches in flight per edge,
//! so memory is about batch size × queue depth × stages, plus one chunk, whatever the file
//! size.
//!
//! Records travel between stages in batches of at most [`BATCH`] and are applied in chunks of
//! `chunk_size`. The store may hold a transaction across chunks ([`crate::store::Held`]): a
//! bigger transaction writes each index page it touches once for more records (a phone index
//! takes random inserts), without more records waiting in the channels.
//!
//! ```text
//! Input ─bytes─▶ read (own thread) ─blocks─▶ parse (own thread) ─Batch<Parsed>─▶ validate (rayon) ─Batch<Validated>─▶ apply (store)
//! ```

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, Flow};
use crate::error::{Code, Position, Problem, Warnings};
use crate::layout::Layout;
use crate::model::{Mark, Parsed, Validated};
use crate::observe::{Counted, Observer, Silent};
use crate::parse::Records;
use crate::report::{FileReport, ReportError, RunReport};
use crate::results;
use crate::source::{Body, Files, Input, SourceError, Sources};
use crate::stage::{BATCH, Batch, DEFAULT_CHUNK_SIZE, INPUT_PAUSE, QUEUE, background_priority};
use crate::store::{Scope, Snapshot, Store};
use crate::telemetry;
use crate::validate::validate_chunk;

#[derive(Clone)]
pub struct Options {
    pub chunk_size: usize,
    pub observer: Arc<dyn Observer>,
    /// Cancelled to stop the run cleanly: the chunk being applied commits, nothing after it
    /// is applied, and the run ends `interrupted`.
    pub stop: CancellationToken,
    /// A line per record goes here as chunks commit (`--results`).
    pub results: Option<results::Shared>,
    /// The failed run this one continues (`--resume`).
    pub resume: Option<Arc<Resume>>,
    /// Where the fields are in the files (SPEC §13); the native format by default.
    pub layout: Arc<Layout>,
}

/// What `--resume` continues: a run that failed, and how far it committed each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub run_id: i64,
    /// The first run of a chain of resumed runs: what it and its followers committed counts
    /// as seen by a snapshot.
    pub origin: i64,
    pub files: Vec<FileReport>,
}

impl Resume {
    /// The run's files as its stored JSON report lists them.
    pub fn from_report(run_id: i64, report: &str) -> Result<Resume, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Stored {
            #[serde(default)]
            files: Vec<FileReport>,
            resumed_from: Option<i64>,
        }
        let stored: Stored = serde_json::from_str(report)?;
        Ok(Resume {
            run_id,
            origin: stored.resumed_from.unwrap_or(run_id),
            files: stored.files,
        })
    }

    /// What of `file` to skip: up to where the run's commits from it ended, if it committed
    /// any.
    fn skip(&self, file: &str) -> Option<Skip> {
        let to = self.files.iter().find(|f| f.file == file)?.end?;
        Some(Skip {
            run_id: self.run_id,
            to,
        })
    }
}

/// A file's records up to a mark, skipped without being applied.
#[derive(Debug, Clone, Copy)]
struct Skip {
    run_id: i64,
    to: Mark,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            observer: Arc::new(Silent),
            stop: CancellationToken::new(),
            results: None,
            resume: None,
            layout: Layout::native(),
        }
    }
}

/// Imports the files in the order given, halting at the first error (SPEC §6). A file is
/// deleted after its own import ended without error (`delete_after_read`); the failing file
/// and every file after it stay where they are.
pub async fn import_files<S: Store>(
    store: &S,
    scope: &Scope,
    files: &Files,
    options: Options,
) -> RunReport {
    let mut report = RunReport::default();
    report.resumed_from = options.resume.as_ref().map(|r| r.origin);
    let scope = &Scope {
        stamp: scope.stamp || files.snapshot.is_some(),
        ..scope.clone()
    };
    let mut sources = Sources::new(files);
    let mut left_unread = false;
    'run: for address in &files.addresses {
        let mut names = match sources.expand(address).await {
            Ok(names) => names,
            Err(e) => {
                let shown = sources.shown(address);
                report.fail(source_failed(&e, &shown));
                break;
            }
        };
        let mut unsettled = None;
        if !files.settle.is_zero() {
            match still_written(&mut sources, &names, files.settle).await {
                Ok(Some((at, warning))) => {
                    names.truncate(at);
                    unsettled = Some(warning);
                }
                Ok(None) => {}
                Err(e) => {
                    let shown = sources.shown(address);
                    report.fail(source_failed(&e, &shown));
                    break;
                }
            }
        }
        for name in names {
            if options.stop.is_cancelled() {
                report.interrupt();
                break 'run;
            }
            let shown = sources.shown(&name);
            let skip = options.resume.as_ref().and_then(|r| r.skip(&shown));
            report.files.push(FileReport {
                file: shown.clone(),
                records: 0,
                // Until this run commits more, the file is as far as the resumed run left it.
                end: skip.map(|s| s.to),
            });
            // A resumed file was checked when it was first imported.
            if skip.is_none()
                && let Err(refused) = shrink_guard(store, scope, &mut sources, files, &name).await
            {
                report.fail(refused);
                break 'run;
            }
            let (input, pending) = match sources.open(&name).await {
                Ok(opened) => opened.split(),
                Err(e) => {
                    report.fail(source_failed(&e, &shown));
                    break 'run;
                }
            };
            options.observer.file_started(&shown, input.size);
            let flow = import_input(store, scope, input, options.clone(), &mut report).await;
            if let Some(skip) = skip
                && report
                    .error
                    .as_ref()
                    .is_none_or(|e| e.code != Code::ResumeMismatch.as_str())
            {
                report.warn(&skipped(skip, &shown), 1);
            }
            options.observer.file_finished();
            let delete = files.delete_after_read && flow == Flow::Continue;
            if let Err(e) = sources.finish(&name, pending, delete).await {
                // A broken transfer explains a parse error at the cut: it becomes the error,
                // keeping the parser's position.
                let mut error = source_failed(&e, &shown);
                if let Some(seen) = report.error.take().filter(|_| e.explains_parse_error()) {
                    error.message = format!("{}; the parser saw: {}", error.message, seen.message);
                    error.line = seen.line;
                    error.column = seen.column;
                    error.record_index = seen.record_index;
                    error.record_id = seen.record_id;
                }
                report.fail(error);
                break 'run;
            }
            if flow == Flow::Halt {
                break 'run;
            }
        }
        if let Some(warning) = unsettled {
            // It and every file after it wait for the next run, in their order.
            report.warn(&warning, 1);
            left_unread = true;
            break;
        }
    }
    sources.close().await;
    if let Some(max_percent) = files.snapshot
        && report.is_ok()
    {
        archive_unseen(store, scope, max_percent, left_unread, &mut report).await;
    }
    report
}

/// The end of a snapshot run that read its files without error: what they left out of the
/// source is archived — unless a file was left for later, or it is more than `max_percent`.
async fn archive_unseen<S: Store>(
    store: &S,
    scope: &Scope,
    max_percent: u64,
    left_unread: bool,
    report: &mut RunReport,
) {
    let Some(run_id) = scope.run_id else {
        return;
    };
    if left_unread {
        let position = Position::default();
        let message = "a file was left for the next run, so this snapshot is not whole: \
                       nothing was archived";
        report.warn(
            &Problem::new(Code::SnapshotIncomplete, message, position),
            1,
        );
        return;
    }
    let since = report.resumed_from.unwrap_or(run_id);
    match store.archive(scope, since, max_percent).await {
        Ok(Snapshot::Archived(archived)) => report.archived = archived,
        Ok(Snapshot::TooMany { would, live }) => report.fail(ReportError::general(
            "snapshot_too_large",
            format!(
                "this snapshot leaves out {would} of the source's {live} premises, accounts and \
                 client links ({}%), more than max_archive_percent = {max_percent}: nothing was \
                 archived. A broken export? If not, raise max_archive_percent for one run",
                would * 100 / live.max(1)
            ),
            None,
        )),
        Err(e) => report.fail(ReportError::general(
            e.code(),
            format!("archiving what the snapshot left out failed: {e}"),
            None,
        )),
    }
}

/// `min_records` and `max_shrink_percent`: a file with fewer records than either allows is
/// refused before any of it is applied. Counting is a pass of the parser over the file (a
/// second download for a remote one); a file that does not read cleanly is left to the import,
/// which reports what is wrong with it.
async fn shrink_guard<S: Store>(
    store: &S,
    scope: &Scope,
    sources: &mut Sources,
    files: &Files,
    name: &str,
) -> Result<(), ReportError> {
    if files.min_records.is_none() && files.max_shrink_percent.is_none() {
        return Ok(());
    }
    let shown = sources.shown(name);
    let unreadable = |e: SourceError| source_failed(&e, &shown);
    let (input, pending) = sources.open(name).await.map_err(unreadable)?.split();
    let mut broken = false;
    let records = check_input(input, Options::default(), |found| {
        broken |= matches!(found, Found::Error(_));
    })
    .await;
    sources
        .finish(name, pending, false)
        .await
        .map_err(unreadable)?;
    if broken {
        return Ok(());
    }
    let last = store
        .last_records(scope.org_id, &shown)
        .await
        .map_err(|e| ReportError::general(e.code(), e.to_string(), Some(&shown)))?;
    let before = last.map_or(String::new(), |n| {
        format!("; the last successful run read {n} from it")
    });
    if let Some(min) = files.min_records
        && records < min
    {
        return Err(ReportError::general(
            "too_few_records",
            format!(
                "{shown} has {records} records, fewer than min_records = {min}{before}: none of it \
                 was applied. A broken export? If not, import it by hand or lower min_records"
            ),
            Some(&shown),
        ));
    }
    if let (Some(percent), Some(last)) = (files.max_shrink_percent, last)
        && records * 100 <= last * (100 - percent.min(100))
        && records < last
    {
        return Err(ReportError::general(
            "export_shrunk",
            format!(
                "{shown} has {records} records{before}: {}% fewer, at least max_shrink_percent = \
                 {percent}; none of it was applied. A broken export? If not, import it by hand or \
                 raise max_shrink_percent",
                (last - records) * 100 / last
            ),
            Some(&shown),
        ));
    }
    Ok(())
}

/// Looks at the sizes of `names` twice, `settle` apart: the first file whose size changed
/// (or that appeared or went meanwhile) is still being written, and with it the warning.
async fn still_written(
    sources: &mut Sources,
    names: &[String],
    settle: std::time::Duration,
) -> Result<Option<(usize, Problem)>, SourceError> {
    let mut first = Vec::with_capacity(names.len());
    for name in names {
        first.push(sources.size(name).await?);
    }
    tokio::time::sleep(settle).await;
    for (i, name) in names.iter().enumerate() {
        let again = sources.size(name).await?;
        if again != first[i] {
            let shown = sources.shown(name);
            let sizes = |s: Option<u64>| s.map_or("unknown".to_owned(), |b| format!("{b} bytes"));
            let message = format!(
                "{shown} is still being written ({}, then {} s later {}): it and the files \
                 after it are left for the next run",
                sizes(first[i]),
                settle.as_secs(),
                sizes(again)
            );
            let position = Position {
                file: Arc::from(shown.as_str()),
                ..Position::default()
            };
            return Ok(Some((
                i,
                Problem::new(Code::FileStillBeingWritten, message, position),
            )));
        }
    }
    Ok(None)
}

/// Imports one export into the report; `Flow::Halt` when the run must stop.
pub async fn import_input<S: Store>(
    store: &S,
    scope: &Scope,
    input: Input,
    options: Options,
    report: &mut RunReport,
) -> Flow {
    let file = input.name.clone();
    let observer = options.observer.clone();
    let stop = options.stop.clone();
    let chunk_size = options.chunk_size.max(1);
    let results = options.results.clone();
    let mut validated = spawn_stages(input, options);
    let mut applier = Applier::new(store, scope, report, observer)
        .grouping()
        .writing(results.clone());
    let mut flow = Flow::Continue;
    // Batches gathered into the next chunk; an invalid record ends a chunk early, since the
    // run halts after it.
    let mut chunk: Vec<Validated> = Vec::new();
    loop {
        // A stop request wins over the next chunk; the chunk being applied always finishes,
        // records gathered for the next one are not applied. A transaction stays open across
        // chunks only while the next records come within `INPUT_PAUSE`: it never holds the
        // writer while the input stalls.
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => {
                applier.interrupt();
                flow = Flow::Halt;
                break;
            }
            next = validated.recv() => next,
            () = tokio::time::sleep(INPUT_PAUSE), if applier.holds() => {
                if applier.commit(&file).await == Flow::Halt {
                    flow = Flow::Halt;
                    break;
                }
                continue;
            }
        };
        let (closed, end) = match next {
            Some(Batch::Records(items)) => {
                let invalid = items.iter().any(|v| v.body.is_err());
                chunk.extend(items);
                if chunk.len() < chunk_size && !invalid {
                    continue;
                }
                (false, None)
            }
            Some(end) => (false, Some(end)),
            None => (true, None),
        };
        // The gathered chunk first, then what ended the input.
        if !chunk.is_empty() {
            flow = applier
                .batch(Batch::Records(std::mem::take(&mut chunk)), &file)
                .await;
        }
        if let Some(end) = end
            && flow == Flow::Continue
        {
            flow = applier.batch(end, &file).await;
        }
        if closed || flow == Flow::Halt {
            break;
        }
    }
    // Dropping the receiver stops the stages upstream at their next send. With results, a
    // halt's leftovers are counted instead: the rest of the file is read, not applied, and
    // only after the commit, so the writer is not held meanwhile.
    let leftover = match &results {
        Some(results) if flow == Flow::Halt && !stop.is_cancelled() => {
            Some((results.clone(), validated))
        }
        _ => {
            drop(validated);
            None
        }
    };
    if applier.commit(&file).await == Flow::Halt {
        flow = Flow::Halt;
    }
    if let Some((results, mut rest_of_file)) = leftover {
        let mut rest = chunk.len() as u64;
        while let Some(batch) = rest_of_file.recv().await {
            if let Batch::Records(items) = batch {
                rest += items.len() as u64;
            }
        }
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .not_processed(rest);
    }
    flow
}

/// Parses and validates without writing, calling `each` for every problem in document
/// order: an error, or a warning with how often it occurred in its record. Returns the number
/// of records read.
pub async fn check_input(input: Input, options: Options, mut each: impl FnMut(Found<'_>)) -> u64 {
    let mut validated = spawn_stages(input, options);
    let mut records = 0;
    while let Some(batch) = validated.recv().await {
        match batch {
            Batch::Records(items) => {
                for item in items {
                    records += 1;
                    each(Found::Record(&item));
                    warned(&item.warnings, &mut each);
                    if let Err(problem) = &item.body {
                        each(Found::Error(problem));
                    }
                }
            }
            Batch::End(warnings) => warned(&warnings, &mut each),
            Batch::Fatal(problem) => each(Found::Error(&problem)),
        }
    }
    records
}

/// A record `check` read, or a problem it found.
pub enum Found<'a> {
    /// A record as validation left it, before its problems.
    Record(&'a Validated),
    Error(&'a Problem),
    /// A warning and how many times it occurred in one record.
    Warning(&'a Problem, u64),
    /// Warnings of a record past the distinct ones it keeps: only their number.
    MoreWarnings(u64),
}

fn warned(warnings: &Warnings, each: &mut impl FnMut(Found<'_>)) {
    for (w, count) in warnings.iter() {
        each(Found::Warning(w, count));
    }
    if warnings.more() > 0 {
        each(Found::MoreWarnings(warnings.more()));
    }
}

/// Starts the parse and validate stages for one input; their output arrives in order.
fn spawn_stages(input: Input, options: Options) -> mpsc::Receiver<Batch<Validated>> {
    let batch_size = options.chunk_size.clamp(1, BATCH);
    let (parsed_tx, parsed_rx) = mpsc::channel(QUEUE);
    let (validated_tx, validated_rx) = mpsc::channel(QUEUE);
    let reader: Box<dyn std::io::Read + Send> = match input.body {
        Body::File(file) => Box::new(file),
        Body::Stream(stream) => Box::new(SyncIoBridge::new(stream)),
    };
    let bytes = Counted::new(reader, options.observer.clone());
    let file = input.name;
    let at = file.clone();
    let skip = options.resume.as_ref().and_then(|r| r.skip(&file));
    let layout = options.layout;
    spawn_stage("parse", &at, parsed_tx, move |out| {
        parse_stage(file, &layout, bytes, batch_size, skip, out)
    });
    spawn_stage("validate", &at, validated_tx, move |out| {
        validate_stage(parsed_rx, out)
    });
    validated_rx
}

/// The validate stage alone, for records parsed elsewhere (the API's JSON).
pub fn spawn_validate(parsed: mpsc::Receiver<Batch<Parsed>>) -> mpsc::Receiver<Batch<Validated>> {
    let (validated_tx, validated_rx) = mpsc::channel(QUEUE);
    spawn_stage("validate", "", validated_tx, move |out| {
        validate_stage(parsed, out)
    });
    validated_rx
}

/// Runs a stage on a thread of its own, at [`background_priority`]. Its own thread, not
/// tokio's blocking pool: a pooled thread would keep the lowered priority for whatever it
/// runs next, and an unprivileged process cannot raise it back.
fn spawn_stage<T: Send + 'static>(
    name: &str,
    file: &str,
    out: mpsc::Sender<Batch<T>>,
    stage: impl FnOnce(mpsc::Sender<Batch<T>>) + Send + 'static,
) {
    let failed = out.clone();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            background_priority();
            stage(out);
        });
    if let Err(e) = spawned {
        // The channel is empty: the run ends with this error, not as an empty input.
        let _ = failed.try_send(Batch::Fatal(thread_failed(name, file, &e)));
    }
}

/// A source's failure as the report's error.
fn source_failed(e: &SourceError, shown: &str) -> ReportError {
    ReportError {
        configuration: e.is_configuration(),
        ..ReportError::general(e.code(), e.to_string(), Some(shown))
    }
}

fn thread_failed(name: &str, file: &str, e: &std::io::Error) -> Problem {
    let position = Position {
        file: file.into(),
        ..Position::default()
    };
    let message = format!(
        "could not start the {name} stage's thread ({e}): the machine is out of threads or \
         memory; run the import again when it has room"
    );
    Problem::new(Code::SourceUnreadable, message, position)
}

/// A resumed file that is not the one the failed run read.
fn mismatch(skip: Skip, file: &str, position: Position, why: &str) -> Problem {
    let message = format!(
        "{file} is not the file run {} read: {why}, so resuming could skip records the \
         database does not have. Nothing of it was applied; import it without --resume \
         (what is already there comes back unchanged)",
        skip.run_id
    );
    Problem::new(Code::ResumeMismatch, message, position)
}

/// The warning a resumed file carries: what was skipped.
fn skipped(skip: Skip, file: &str) -> Problem {
    let message = format!(
        "resumed after run {}: the first {} records of {file}, which it committed, were \
         skipped without being applied (the file reads the same up to them)",
        skip.run_id, skip.to.record
    );
    let position = Position {
        file: file.into(),
        ..Position::default()
    };
    Problem::new(Code::Resumed, message, position)
}

fn parse_stage(
    file: Arc<str>,
    layout: &Layout,
    bytes: impl std::io::Read + Send + 'static,
    batch_size: usize,
    mut skip: Option<Skip>,
    out: mpsc::Sender<Batch<Parsed>>,
) {
    let mut reader = match Records::open(file.clone(), layout, bytes, "read", background_priority) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = out.blocking_send(Batch::Fatal(thread_failed("read", &file, &e)));
            return;
        }
    };
    let mut chunk = Vec::with_capacity(batch_size);
    loop {
        match reader.read_record() {
            Ok(Some(record)) => {
                if let Some(s) = skip {
                    // Records up to the mark are not even validated; the mark's own record
                    // proves the text before it is the one the resumed run read.
                    let at = record.end.map_or(0, |end| end.record);
                    if at < s.to.record {
                        continue;
                    }
                    skip = None;
                    if record.end != Some(s.to) {
                        let problem = mismatch(
                            s,
                            &file,
                            record.position,
                            &format!(
                                "its text up to record {} differs from what run {} read",
                                s.to.record, s.run_id
                            ),
                        );
                        let _ = out.blocking_send(Batch::Fatal(problem));
                        return;
                    }
                    continue;
                }
                chunk.push(record);
                if chunk.len() == batch_size {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(batch_size));
                    if !hand_on(&out, Batch::Records(full), "parse") {
                        return;
                    }
                }
            }
            Ok(None) => {
                if let Some(s) = skip {
                    let position = Position {
                        file: file.clone(),
                        ..Position::default()
                    };
                    let problem = mismatch(
                        s,
                        &file,
                        position,
                        &format!(
                            "it ends before record {}, the last that run {} committed",
                            s.to.record, s.run_id
                        ),
                    );
                    let _ = out.blocking_send(Batch::Fatal(problem));
                    return;
                }
                let trailing = reader.take_trailing_warnings();
                if !chunk.is_empty() && out.blocking_send(Batch::Records(chunk)).is_err() {
                    return;
                }
                let _ = out.blocking_send(Batch::End(trailing));
                return;
            }
            Err(problem) => {
                if !chunk.is_empty() && out.blocking_send(Batch::Records(chunk)).is_err() {
                    return;
                }
                let _ = out.blocking_send(Batch::Fatal(*problem));
                return;
            }
        }
    }
}

fn validate_stage(mut input: mpsc::Receiver<Batch<Parsed>>, out: mpsc::Sender<Batch<Validated>>) {
    while let Some(batch) = input.blocking_recv() {
        let batch = match batch {
            Batch::Records(chunk) => Batch::Records(validate_chunk(chunk)),
            Batch::End(w) => Batch::End(w),
            Batch::Fatal(p) => Batch::Fatal(p),
        };
        if !hand_on(&out, batch, "validate") {
            return;
        }
    }
}

/// Sends a batch downstream, timing how long the next stage kept this one waiting.
fn hand_on<T>(out: &mpsc::Sender<T>, item: T, stage: &'static str) -> bool {
    let started = std::time::Instant::now();
    let sent = out.blocking_send(item).is_ok();
    telemetry::stage_waited(stage, started.elapsed());
    sent
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::stage::BACKGROUND_NICE;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(i32::MIN)
    }

    #[test]
    fn stages_run_on_their_own_threads_at_the_background_priority() {
        let before = own_nice();
        let (tx, rx) = std::sync::mpsc::channel();
        let (out, _batches) = mpsc::channel::<Batch<()>>(1);
        spawn_stage("test-stage", "", out, move |_| {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send((name, own_nice()));
        });
        let (name, nice) = rx.recv().expect("the stage ran");
        assert_eq!(name.as_deref(), Some("test-stage"));
        // A thread already nicer than that stays where it is.
        assert_eq!(nice, before.max(BACKGROUND_NICE));
        // The caller's own priority is not touched.
        assert_eq!(own_nice(), before);
    }

    /// An export whose reads note which thread made them, and at what priority.
    struct Watched {
        xml: &'static [u8],
        seen: std::sync::mpsc::Sender<(Option<String>, i32)>,
    }

    impl std::io::Read for Watched {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = self.seen.send((name, own_nice()));
            std::io::Read::read(&mut self.xml, out)
        }
    }

    #[test]
    fn the_input_is_read_on_a_thread_of_its_own_at_the_background_priority() {
        let before = own_nice();
        let (seen, reads) = std::sync::mpsc::channel();
        let xml =
            b"<crm-import version=\"1\"><premises><premise id=\"P1\"/></premises></crm-import>";
        let (out, mut batches) = mpsc::channel(4);
        parse_stage(
            Arc::from("t.xml"),
            &Layout::native(),
            Watched { xml, seen },
            10,
            None,
            out,
        );
        let Some(Batch::Records(records)) = batches.blocking_recv() else {
            panic!("the premise was parsed");
        };
        assert_eq!(records.len(), 1);
        let (name, nice) = reads.recv().expect("the input was read");
        assert_eq!(name.as_deref(), Some("read"));
        assert_eq!(nice, before.max(BACKGROUND_NICE));
        assert!(reads.iter().all(|(n, _)| n.as_deref() == Some("read")));
    }
}
