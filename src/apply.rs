//! The apply stage: hands validated chunks to the store in order and halts at the first
//! error — a record that failed validation, or one the store refused. Records before it
//! stay committed; nothing after it is applied.

use std::sync::Arc;

use crate::error::Problem;
use crate::model::{Mark, Record, RecordOutcome, Validated};
use crate::observe::Observer;
use crate::report::{ReportError, RunReport};
use crate::results::{self, Line};
use crate::stage::Batch;
use crate::store::{Hold, Scope, Seen, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Halt,
}

pub struct Applier<'a, S: Store> {
    store: &'a S,
    scope: &'a Scope,
    report: &'a mut RunReport,
    observer: Arc<dyn Observer>,
    /// Per-record outcomes kept for the caller (the API answers with them); off for files.
    collect: bool,
    outcomes: Vec<Applied>,
    /// Lets the store keep a transaction open across chunks (files); off where a caller
    /// sees outcomes chunk by chunk (the API), since those must be committed.
    group: bool,
    held: S::Held,
    /// Outcomes in `held`'s open transaction, counted in the report once it commits.
    pending: Vec<RecordOutcome>,
    /// Where each record's result goes, if anywhere; its lines wait with `pending`.
    results: Option<results::Shared>,
    lines: Vec<Line>,
    /// The mark of the last record in `pending`, the file's end once it commits.
    pending_end: Option<Mark>,
    /// The ids `pending` carries, stamped once it commits (`Scope::stamp`).
    seen: Seen,
}

/// One applied record: its number in the input, its id and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub id: String,
    pub outcome: RecordOutcome,
}

impl<'a, S: Store> Applier<'a, S> {
    pub fn new(
        store: &'a S,
        scope: &'a Scope,
        report: &'a mut RunReport,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Applier {
            store,
            scope,
            report,
            observer,
            collect: false,
            outcomes: Vec::new(),
            group: false,
            held: store.hold(),
            pending: Vec::new(),
            results: None,
            lines: Vec::new(),
            pending_end: None,
            seen: Seen::default(),
        }
    }

    /// Writes a line per record to `results` as its chunk commits.
    pub fn writing(mut self, results: Option<results::Shared>) -> Self {
        self.results = results;
        self
    }

    /// Lets one commit cover several chunks; the caller commits with [`Applier::commit`]
    /// whenever it would wait for input, and when the input ends or halts.
    pub fn grouping(mut self) -> Self {
        self.group = true;
        self
    }

    /// Keeps per-record outcomes for [`Applier::take_outcomes`].
    pub fn collecting(mut self) -> Self {
        self.collect = true;
        self
    }

    /// The outcomes collected since the last call, in order.
    pub fn take_outcomes(&mut self) -> Vec<Applied> {
        std::mem::take(&mut self.outcomes)
    }

    /// The store holds a transaction open with records applied in it.
    pub fn holds(&self) -> bool {
        self.held.open()
    }

    /// The run was asked to stop between chunks.
    pub fn interrupt(&mut self) {
        self.report.interrupt();
    }

    /// Commits what the store holds open and counts it; `Halt` when the commit failed (its
    /// records rolled back, and the report says so).
    pub async fn commit(&mut self, file: &str) -> Flow {
        match self.store.commit(&mut self.held).await {
            Ok(()) => {
                let seen = self.see(file).await;
                self.count(&[]);
                self.keep_results().await;
                seen
            }
            Err(e) => {
                self.lost(&e, file);
                Flow::Halt
            }
        }
    }

    /// Counts outcomes as applied, or keeps them until the open transaction commits; the
    /// results' lines likewise.
    fn count(&mut self, outcomes: &[RecordOutcome]) {
        if self.held.open() {
            self.pending.extend_from_slice(outcomes);
            return;
        }
        for outcome in self.pending.drain(..).chain(outcomes.iter().cloned()) {
            self.report.applied(&outcome);
        }
        if let Some(end) = self.pending_end.take() {
            self.report.reached(end);
        }
        if let Some(results) = &self.results
            && !self.lines.is_empty()
        {
            let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
            for line in self.lines.drain(..) {
                results.write(&line);
            }
        }
    }

    /// Stamps what just committed as seen by the run; marks the premises it brought back
    /// from an archive as `restored` in the results. A failure halts the run: unstamped,
    /// these records would look left out to a snapshot, which must not end ok.
    async fn see(&mut self, file: &str) -> Flow {
        let seen = std::mem::take(&mut self.seen);
        if !self.scope.stamp || seen.is_empty() {
            return Flow::Continue;
        }
        let (restored, premises) = match self.store.see(self.scope, &seen).await {
            Ok(done) => done,
            Err(e) => {
                self.report
                    .fail(ReportError::general(e.code(), e.to_string(), Some(file)));
                return Flow::Halt;
            }
        };
        self.report.restored.premises += restored.premises;
        self.report.restored.accounts += restored.accounts;
        self.report.restored.links += restored.links;
        if !premises.is_empty() {
            let premises: std::collections::HashSet<&str> =
                premises.iter().map(String::as_str).collect();
            for line in &mut self.lines {
                if line.kind == "premise" && premises.contains(line.id.as_str()) {
                    line.outcome = "restored";
                }
            }
        }
        Flow::Continue
    }

    /// Stores the next part of the run's kept results once there is one. Results are an
    /// account of the run, not part of it: a failure to keep them is logged, not a halt.
    async fn keep_results(&mut self) {
        let (Some(results), Some(run_id)) = (&self.results, self.scope.run_id) else {
            return;
        };
        let part = results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_part();
        if let Some((part, bytes)) = part
            && let Err(e) = self.store.keep_results(run_id, part, &bytes).await
        {
            tracing::warn!(run_id, part, error = %e, "cannot keep the run's results");
        }
    }

    /// A result line for `item`, to be written once what is open commits.
    fn result(&mut self, item: &Validated, outcome: Result<&RecordOutcome, &Problem>) {
        if self.results.is_none() {
            return;
        }
        let (kind, outcome, merged_into, error) = match outcome {
            Ok(RecordOutcome::Premise { premise, .. }) => ("premise", premise.as_str(), None, None),
            Ok(RecordOutcome::Client { outcome, merged }) => {
                ("client", outcome.as_str(), *merged, None)
            }
            Err(problem) => (item.position.kind, "error", None, Some(problem)),
        };
        self.lines.push(Line {
            file: item.position.file.clone(),
            index: item.position.record_index,
            line: Some(item.position.line),
            kind,
            id: item.position.record_id.clone().unwrap_or_default(),
            outcome,
            merged_into: merged_into.map(|m| m.into),
            code: error.map(|p| p.code.as_str().to_owned()),
            message: error.map(|p| p.message.clone()).or_else(|| {
                merged_into.map(|m| format!("card {} was merged into card {}", m.from, m.into))
            }),
            count: None,
        });
    }

    /// Records read but not applied: after the one that halted a chunk, or rolled back.
    fn skipped(&self, records: usize) {
        if let Some(results) = &self.results {
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .not_processed(records as u64);
        }
    }

    /// The store failed: what its open transaction held is gone.
    fn lost(&mut self, e: &StoreError, file: &str) {
        let rolled_back = self
            .lines
            .drain(..)
            .filter(|l| l.outcome != "error")
            .count();
        self.skipped(rolled_back);
        let mut message = e.to_string();
        if !self.pending.is_empty() {
            message.push_str(&format!(
                "; the {} records applied since the last commit were rolled back, the records \
                 before them stay; run the import again to apply the rest",
                self.pending.len()
            ));
            self.pending.clear();
        }
        self.pending_end = None;
        self.seen = Seen::default();
        self.report
            .fail(ReportError::general(e.code(), message, Some(file)));
    }

    pub async fn batch(&mut self, batch: Batch<Validated>, file: &str) -> Flow {
        let flow = self.read(batch, file).await;
        if !self.group && self.commit(file).await == Flow::Halt {
            return Flow::Halt;
        }
        // The store may have committed on its own: what that wrote goes out as it fills.
        self.keep_results().await;
        flow
    }

    async fn read(&mut self, batch: Batch<Validated>, file: &str) -> Flow {
        match batch {
            Batch::Records(items) => self.chunk(items, file).await,
            Batch::End(warnings) => {
                self.report.warn_all(&warnings);
                Flow::Continue
            }
            Batch::Fatal(problem) => {
                self.report.fail(ReportError::from(&problem));
                Flow::Halt
            }
        }
    }

    async fn chunk(&mut self, items: Vec<Validated>, file: &str) -> Flow {
        // The valid prefix goes to the store; the first invalid record stops the run after it.
        let valid: Vec<&Record> = items.iter().map_while(|v| v.body.as_ref().ok()).collect();
        let applied = if valid.is_empty() {
            Default::default()
        } else {
            match self
                .store
                .apply_chunk(self.scope, &valid, &mut self.held)
                .await
            {
                Ok(applied) => applied,
                Err(e) => {
                    // This chunk's records were read and not applied.
                    self.skipped(items.len());
                    self.lost(&e, file);
                    return Flow::Halt;
                }
            }
        };
        for (item, outcome) in items.iter().zip(&applied.outcomes) {
            self.result(item, Ok(outcome));
        }
        if let Some(last) = applied.outcomes.len().checked_sub(1)
            && let Some(end) = items[last].end
        {
            self.pending_end = Some(end);
        }
        if self.scope.stamp {
            for record in &valid[..applied.outcomes.len()] {
                match record {
                    Record::Premise(p) => {
                        self.seen.premises.push(p.id.clone());
                        self.seen
                            .accounts
                            .extend(p.accounts.iter().map(|a| a.id.clone()));
                    }
                    Record::Client(c) => self.seen.clients.push(c.id.clone()),
                }
            }
        }
        // A store that committed the chunk already: stamp it before its lines are written.
        let stamped = if self.held.open() {
            Flow::Continue
        } else {
            self.see(file).await
        };
        self.count(&applied.outcomes);
        for (item, outcome) in items.iter().zip(&applied.outcomes) {
            self.report.warn_all(&item.warnings);
            if self.collect {
                self.outcomes.push(Applied {
                    index: item.position.record_index.unwrap_or_default(),
                    id: item.position.record_id.clone().unwrap_or_default(),
                    outcome: outcome.clone(),
                });
            }
        }
        self.observer.records_applied(applied.outcomes.len() as u64);
        if let Some(refusal) = applied.refused {
            let item = &items[refusal.index];
            self.report.warn_all(&item.warnings);
            let mut problem = Problem::new(refusal.code, refusal.message, item.position.clone());
            problem.field = refusal.field;
            self.result(item, Err(&problem));
            self.skipped(items.len() - refusal.index - 1);
            self.report.fail(ReportError::from(&problem));
            return Flow::Halt;
        }
        if let Some(item) = items.get(valid.len()) {
            self.report.warn_all(&item.warnings);
            if let Err(problem) = &item.body {
                self.result(item, Err(problem));
                self.report.fail(ReportError::from(&**problem));
            }
            self.skipped(items.len() - valid.len() - 1);
            return Flow::Halt;
        }
        stamped
    }
}
