//! What a run did: counts per entity and outcome, warnings grouped by code, the error that
//! stopped it. Rendered as the JSON report (`--report-json`, run history) and as the
//! summary printed at the end of every import.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Code, Problem, Warnings};
use crate::model::{Mark, Outcome, RecordOutcome};
use crate::store::{Archived, RunStatus};

fn is_none(counts: &Archived) -> bool {
    counts.total() == 0
}

/// Distinct warnings kept with their first position; past this they are only counted, so a
/// file with a warning on every record costs no memory.
pub const MAX_WARNING_GROUPS: usize = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EntityCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClientCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub merged: u64,
    pub external_id_added: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub premise: EntityCounts,
    pub account: EntityCounts,
    pub client: ClientCounts,
}

impl EntityCounts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Unchanged => self.unchanged += 1,
            // Premises and accounts are only created, updated or left alone.
            Outcome::Updated | Outcome::Merged | Outcome::ExternalIdAdded => self.updated += 1,
        }
    }
}

impl Counts {
    pub fn add(&mut self, outcome: &RecordOutcome) {
        match outcome {
            RecordOutcome::Premise { premise, accounts } => {
                self.premise.add(*premise);
                for a in accounts {
                    self.account.add(*a);
                }
            }
            RecordOutcome::Client { outcome, .. } => {
                let c = &mut self.client;
                match outcome {
                    Outcome::Created => c.created += 1,
                    Outcome::Updated => c.updated += 1,
                    Outcome::Unchanged => c.unchanged += 1,
                    Outcome::Merged => c.merged += 1,
                    Outcome::ExternalIdAdded => c.external_id_added += 1,
                }
            }
        }
    }

    /// True when the run changed nothing: everything was `unchanged`.
    pub fn all_unchanged(&self) -> bool {
        let p = self.premise;
        let a = self.account;
        let c = self.client;
        p.created
            + p.updated
            + a.created
            + a.updated
            + c.created
            + c.updated
            + c.merged
            + c.external_id_added
            == 0
    }
}

/// One group of warnings: the first one met, and how many of its kind there were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WarningGroup {
    pub code: Code,
    pub message: String,
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub record_id: Option<String>,
    pub count: u64,
}

/// The error that stopped a run, with its position where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReportError {
    pub code: String,
    /// The run could not start for want of configuration (a secret the pipeline names but
    /// the environment lacks): the command exits 2, not 1.
    #[serde(skip)]
    pub configuration: bool,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub record_index: Option<u64>,
    pub record_id: Option<String>,
    pub field: Option<String>,
}

impl From<&Problem> for ReportError {
    fn from(p: &Problem) -> Self {
        let pos = &p.position;
        ReportError {
            code: p.code.as_str().to_owned(),
            configuration: false,
            message: p.message.clone(),
            file: Some(pos.file.to_string()),
            line: (pos.line > 0).then_some(pos.line),
            column: (pos.line > 0 && pos.column > 0).then_some(pos.column),
            record_index: pos.record_index,
            record_id: pos.record_id.clone(),
            field: p.field.clone(),
        }
    }
}

impl ReportError {
    /// Where the error is, as people read it: `FILE:LINE:COLUMN, record N (ID), field F`,
    /// each part only when known.
    pub fn place(&self) -> String {
        let mut s = String::new();
        if let Some(file) = &self.file {
            s.push_str(file);
            match (self.line, self.column) {
                (Some(line), Some(column)) => {
                    let _ = write!(s, ":{line}:{column}");
                }
                // A CSV line or an XLSX row.
                (Some(line), None) => {
                    let _ = write!(s, ":{line}");
                }
                _ => {}
            }
        }
        if let Some(i) = self.record_index {
            let _ = write!(s, ", record {i}");
        }
        if let Some(id) = &self.record_id {
            let _ = write!(s, " ({id})");
        }
        if let Some(field) = &self.field {
            let _ = write!(s, ", field {field}");
        }
        s
    }

    /// An error without a position: a database or a source that failed.
    pub fn general(code: &str, message: impl Into<String>, file: Option<&str>) -> Self {
        ReportError {
            code: code.to_owned(),
            configuration: false,
            message: message.into(),
            file: file.map(str::to_owned),
            line: None,
            column: None,
            record_index: None,
            record_id: None,
            field: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
    /// Stopped on request (SIGTERM, Ctrl-C) after a whole chunk.
    Interrupted,
    /// Not started: the pipeline was already running.
    Refused,
}

impl From<Status> for RunStatus {
    fn from(status: Status) -> RunStatus {
        match status {
            Status::Ok => RunStatus::Ok,
            Status::Error => RunStatus::Error,
            Status::Interrupted => RunStatus::Interrupted,
            Status::Refused => RunStatus::Refused,
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Interrupted => "interrupted",
            Status::Refused => "refused",
        }
    }
}

/// The report of one run (SPEC §6).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    pub status: Status,
    /// Records applied (committed), over all files.
    pub records: u64,
    pub counts: Counts,
    pub warnings: Vec<WarningGroup>,
    /// All warnings, including those past the group cap.
    pub warnings_total: u64,
    pub error: Option<ReportError>,
    /// The files of the run, in the order given, with the records applied from each.
    pub files: Vec<FileReport>,
    /// What a snapshot archived after the run, and what the run brought back from an archive.
    #[serde(skip_serializing_if = "is_none")]
    pub archived: Archived,
    #[serde(skip_serializing_if = "is_none")]
    pub restored: Archived,
    /// The run whose records a `--resume` chain started with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<i64>,
    #[serde(skip)]
    warning_index: HashMap<(Code, String), usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FileReport {
    pub file: String,
    pub records: u64,
    /// The last record committed from the file: where `--resume` continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Mark>,
}

impl Default for RunReport {
    fn default() -> Self {
        RunReport {
            status: Status::Ok,
            records: 0,
            counts: Counts::default(),
            warnings: Vec::new(),
            warnings_total: 0,
            error: None,
            files: Vec::new(),
            archived: Archived::default(),
            restored: Archived::default(),
            resumed_from: None,
            warning_index: HashMap::new(),
        }
    }
}

impl RunReport {
    /// Counts one record's warnings into their groups.
    pub fn warn_all(&mut self, warnings: &Warnings) {
        for (w, count) in warnings.iter() {
            self.warn(w, count);
        }
        self.warnings_total += warnings.more();
    }

    /// Counts `count` occurrences of one warning into its group.
    pub fn warn(&mut self, w: &Problem, count: u64) {
        self.warnings_total += count;
        let key = (w.code, w.key.clone());
        if let Some(&i) = self.warning_index.get(&key) {
            self.warnings[i].count += count;
        } else if self.warnings.len() < MAX_WARNING_GROUPS {
            self.warning_index.insert(key, self.warnings.len());
            self.warnings.push(WarningGroup {
                code: w.code,
                message: w.message.clone(),
                file: w.position.file.to_string(),
                line: w.position.line,
                column: w.position.column,
                record_id: w.position.record_id.clone(),
                count,
            });
        }
    }

    pub fn applied(&mut self, outcome: &RecordOutcome) {
        self.records += 1;
        self.counts.add(outcome);
        if let Some(file) = self.files.last_mut() {
            file.records += 1;
        }
    }

    /// The file being read is committed up to `end`.
    pub fn reached(&mut self, end: Mark) {
        if let Some(file) = self.files.last_mut() {
            file.end = Some(end);
        }
    }

    pub fn fail(&mut self, error: ReportError) {
        self.status = Status::Error;
        self.error = Some(error);
    }

    /// The run was asked to stop: what was applied stays, the rest waits for the next run.
    pub fn interrupt(&mut self) {
        self.status = Status::Interrupted;
        self.error = Some(ReportError::general(
            "interrupted",
            format!(
                "the run was stopped on request after {} records; everything applied stays, \
                 the next run applies the rest (what is already there comes back unchanged)",
                self.records
            ),
            self.files.last().map(|f| f.file.as_str()),
        ));
    }

    /// The start was refused because another run holds the pipeline.
    pub fn refuse(&mut self, message: String) {
        self.status = Status::Refused;
        self.error = Some(ReportError::general("already_running", message, None));
    }

    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The readable summary printed at the end of an import.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let status = self.status.as_str().to_uppercase();
        let _ = writeln!(
            s,
            "import {status}: {} records applied from {} file(s)",
            self.records,
            self.files.len()
        );
        let c = &self.counts;
        let _ = writeln!(
            s,
            "  premises: {} created, {} updated, {} unchanged",
            c.premise.created, c.premise.updated, c.premise.unchanged
        );
        let _ = writeln!(
            s,
            "  accounts: {} created, {} updated, {} unchanged",
            c.account.created, c.account.updated, c.account.unchanged
        );
        let _ = writeln!(
            s,
            "  clients:  {} created, {} updated, {} unchanged, {} merged, {} external id added",
            c.client.created,
            c.client.updated,
            c.client.unchanged,
            c.client.merged,
            c.client.external_id_added
        );
        for (what, counts) in [("archived", &self.archived), ("restored", &self.restored)] {
            if counts.total() > 0 {
                let _ = writeln!(
                    s,
                    "  {what}: {} premises, {} accounts, {} client links",
                    counts.premises, counts.accounts, counts.links
                );
            }
        }
        if self.warnings_total > 0 {
            let _ = writeln!(s, "  warnings: {}", self.warnings_total);
            for w in &self.warnings {
                let _ = writeln!(
                    s,
                    "    {} ×{}: {}:{}{}: {}",
                    w.code,
                    w.count,
                    w.file,
                    w.line,
                    if w.column > 0 {
                        format!(":{}", w.column)
                    } else {
                        String::new()
                    },
                    w.message
                );
            }
            let shown: u64 = self.warnings.iter().map(|w| w.count).sum();
            if shown < self.warnings_total {
                let _ = writeln!(
                    s,
                    "    … and {} more of other kinds",
                    self.warnings_total - shown
                );
            }
        }
        if let Some(e) = &self.error {
            let within = if e.file.is_some() { " in " } else { "" };
            let _ = writeln!(s, "  error: {}{within}{}: {}", e.code, e.place(), e.message);
            let at = if e.record_index.is_some() || e.line.is_some() {
                "this record"
            } else {
                "this point"
            };
            let _ = writeln!(
                s,
                "  nothing after {at} was applied; everything before it is kept"
            );
        }
        s
    }
}
