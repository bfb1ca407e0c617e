//! The daemon: every pipeline of a folder on its schedule, a run-now trigger, e-mailed
//! reports, `/metrics`. Reloads the folder on SIGHUP; on SIGTERM or Ctrl-C the running
//! runs finish their chunk, end `interrupted`, and the process exits.
//!
//! Overlaps are the store's business: every start goes through the pipeline's lease, so a
//! second start — scheduled, manual, from the API or from another daemon on the same
//! database — is refused and recorded the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, ConfigError, ConfigErrors, Pipeline};
use crate::layout;
use crate::notify::Smtp;
use crate::observe::Progress;
use crate::pipeline::{self, Options, Resume};
use crate::run::{self, Begun, Finished};
use crate::schedule::Schedule;
use crate::secret::{Secret, SecretError, SecretKey};
use crate::store::{Scope, Store, StoreError, StoredPipeline, Trigger};
use crate::telemetry;

/// A loaded pipeline and its checked schedule.
struct Entry {
    pipeline: Arc<Pipeline>,
    schedule: Option<Schedule>,
    /// Made in the console (kept in the database), not read from a file.
    stored: bool,
}

/// How often a daemon reads the console's pipelines again, so that one saved through
/// another process (another daemon on the same database) runs here too.
const STORED_REFRESH: Duration = Duration::from_secs(60);

pub struct Daemon<S> {
    store: Arc<S>,
    /// The folder of pipeline files; `None` serves the console's pipelines only.
    dir: Option<PathBuf>,
    /// Opens the FTP passwords of the console's pipelines.
    secret_key: OnceLock<SecretKey>,
    smtp: Option<Smtp>,
    stop: CancellationToken,
    tasks: TaskTracker,
    pipelines: Mutex<BTreeMap<String, Entry>>,
    /// The runs this daemon is carrying out, by run id.
    running: Mutex<HashMap<i64, Arc<Progress>>>,
}

/// A run that was started: its id, and its end to await.
pub struct Started {
    pub run_id: i64,
    pub handle: JoinHandle<Result<Finished, StoreError>>,
}

/// Why a console pipeline was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Mistakes, by the pipeline file's keys.
    #[error("the pipeline has mistakes")]
    Invalid(Vec<ConfigError>),
    /// The organization has no console pipeline of that name.
    #[error("there is no such pipeline")]
    NotFound,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Why a start did not start anything.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("there is no pipeline {0:?}")]
    Unknown(String),
    #[error("the daemon is stopping")]
    Stopping,
    /// Recorded as a `refused` run; the report says which run holds the pipeline.
    #[error("{}", .0.report.error.as_ref().map(|e| e.message.as_str()).unwrap_or("already running"))]
    AlreadyRunning(Box<Finished>),
    #[error("{0}")]
    Store(StoreError),
}

impl<S: Store + 'static> Daemon<S> {
    /// A daemon over the pipelines of `dir`; call [`Daemon::reload`] to load them.
    pub fn new(store: Arc<S>, dir: &Path, smtp: Option<Smtp>) -> Arc<Self> {
        Daemon::over(store, Some(dir.to_path_buf()), smtp)
    }

    /// A daemon without a folder: the console's pipelines only.
    pub fn without_files(store: Arc<S>, smtp: Option<Smtp>) -> Arc<Self> {
        Daemon::over(store, None, smtp)
    }

    fn over(store: Arc<S>, dir: Option<PathBuf>, smtp: Option<Smtp>) -> Arc<Self> {
        Arc::new(Daemon {
            store,
            dir,
            secret_key: OnceLock::new(),
            smtp,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            pipelines: Mutex::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// (Re)reads every `*.toml` of the folder. A file with mistakes is skipped (its errors
    /// are returned and logged) and the others still run; a run in progress keeps going.
    pub fn reload(&self) -> Result<Vec<ConfigErrors>, std::io::Error> {
        let mut loaded = BTreeMap::new();
        let mut failed = Vec::new();
        let Some(dir) = &self.dir else {
            return Ok(failed);
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            match config::load(&path) {
                Ok(pipeline) => {
                    let schedule = pipeline
                        .schedule
                        .as_deref()
                        .and_then(|s| Schedule::parse(s, Some(&pipeline.timezone)).ok());
                    if loaded.contains_key(&pipeline.name) {
                        tracing::error!(
                            pipeline = %pipeline.name,
                            file = %path.display(),
                            "another file already names this pipeline; this one is skipped"
                        );
                        continue;
                    }
                    loaded.insert(
                        pipeline.name.clone(),
                        Entry {
                            pipeline: Arc::new(pipeline),
                            schedule,
                            stored: false,
                        },
                    );
                }
                Err(errors) => {
                    tracing::error!("{errors}");
                    failed.push(errors);
                }
            }
        }
        tracing::info!(pipelines = loaded.len(), "pipelines loaded");
        let mut pipelines = self.lock();
        // A file's pipeline takes the name from a console pipeline of the same name.
        pipelines.retain(|name, e| e.stored && !loaded.contains_key(name));
        pipelines.append(&mut loaded);
        Ok(failed)
    }

    /// The key that opens the console pipelines' FTP passwords (set once, at start).
    pub fn set_secret_key(&self, key: SecretKey) {
        let _ = self.secret_key.set(key);
    }

    /// The key, for the console to seal passwords with.
    pub fn secret_key(&self) -> Option<&SecretKey> {
        self.secret_key.get()
    }

    /// (Re)reads the console's pipelines from the database, checked as pipeline files are;
    /// one with mistakes (or a password this key cannot open) is skipped and returned.
    pub async fn load_stored(&self) -> Result<Vec<ConfigErrors>, StoreError> {
        let rows = self.store.stored_pipelines().await?;
        let mut loaded = BTreeMap::new();
        let mut failed = Vec::new();
        for row in rows {
            match config::parse_stored(&row, self.secret_key.get()) {
                Ok(pipeline) => {
                    let schedule = pipeline
                        .schedule
                        .as_deref()
                        .and_then(|s| Schedule::parse(s, Some(&pipeline.timezone)).ok());
                    let entry = Entry {
                        pipeline: Arc::new(pipeline),
                        schedule,
                        stored: true,
                    };
                    loaded.insert(row.name.clone(), entry);
                }
                Err(errors) => {
                    tracing::error!("{errors}");
                    failed.push(errors);
                }
            }
        }
        let mut pipelines = self.lock();
        pipelines.retain(|_, e| !e.stored);
        for (name, entry) in loaded {
            if pipelines.contains_key(&name) {
                tracing::error!(pipeline = %name, "a pipeline file has this name; the console's is skipped");
                continue;
            }
            pipelines.insert(name, entry);
        }
        Ok(failed)
    }

    /// Creates (`create`) or replaces an organization's console pipeline from its TOML (a
    /// pipeline file's keys, without `organization`): checked as a pipeline file is, the
    /// password typed for it sealed (the stored one kept when none is typed), saved, and
    /// loaded here at once (other daemons read it within [`STORED_REFRESH`]).
    pub async fn save_pipeline(
        &self,
        org: &str,
        definition: &str,
        password: Option<&str>,
        create: bool,
    ) -> Result<Arc<Pipeline>, SaveError> {
        let invalid = |key: &str, message: String| {
            SaveError::Invalid(vec![ConfigError {
                key: key.into(),
                message,
            }])
        };
        let table: toml::Table =
            toml::from_str(definition).map_err(|e| invalid("(syntax)", e.message().to_owned()))?;
        let name = table
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let stored = self
            .store
            .stored_pipelines()
            .await?
            .into_iter()
            .find(|p| p.name == name && p.organization == org);
        if create && self.is_stored(&name) == Some(false) {
            return Err(invalid(
                "name",
                "a pipeline file already has this name".into(),
            ));
        }
        if !create && stored.is_none() {
            return Err(SaveError::NotFound);
        }
        // A pipeline made through the console or the API reads only the server's offered
        // layouts, never another file of its disk.
        if let Some(path) = table.get("layout").and_then(toml::Value::as_str)
            && !layout::is_offered(path)
        {
            return Err(invalid(
                "layout",
                format!(
                    "{path:?} is not one of the layouts in the server's {} folder",
                    layout::FOLDER
                ),
            ));
        }
        let sealed = match password {
            None => None,
            Some(password) => {
                let key = self
                    .secret_key()
                    .ok_or_else(|| invalid("ftp.password", SecretError::NoKey.to_string()))?;
                Some(
                    key.seal(password)
                        .map_err(|e| invalid("ftp.password", e.to_string()))?,
                )
            }
        };
        let pipeline = StoredPipeline {
            organization: org.to_owned(),
            name,
            definition: definition.to_owned(),
            ftp_password: sealed,
        };
        // Only whether there is a password matters to the check.
        let checked = StoredPipeline {
            ftp_password: None,
            ..pipeline.clone()
        };
        let has_password = password.is_some() || stored.is_some_and(|s| s.ftp_password.is_some());
        let placeholder = has_password.then(|| Secret::new(""));
        config::parse_stored_with(&checked, placeholder)
            .map_err(|e| SaveError::Invalid(e.errors))?;
        if !self.store.save_pipeline(&pipeline, create).await? {
            return Err(invalid(
                "name",
                "a pipeline of this name already exists".into(),
            ));
        }
        self.load_stored().await?;
        self.pipeline(&pipeline.name).ok_or(SaveError::NotFound)
    }

    /// Deletes an organization's console pipeline; `false` when it has none of that name.
    pub async fn delete_pipeline(&self, org: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_pipeline(org, name).await?;
        if deleted {
            self.load_stored().await?;
        }
        Ok(deleted)
    }

    /// Whether the pipeline was made in the console (`None`: there is no such pipeline).
    pub fn is_stored(&self, name: &str) -> Option<bool> {
        self.lock().get(name).map(|e| e.stored)
    }

    /// The loaded pipelines' names.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The earliest scheduled run strictly after `after`.
    pub fn next_due(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.lock()
            .values()
            .filter_map(|e| e.schedule.as_ref()?.next_after(after))
            .map(|t| t.with_timezone(&Utc))
            .min()
    }

    /// The progress of a run this daemon is carrying out; `None` once it ended (or when
    /// another process carries it out).
    pub fn progress(&self, run_id: i64) -> Option<Arc<Progress>> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.get(&run_id).cloned()
    }

    /// A loaded pipeline.
    pub fn pipeline(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.lock().get(name).map(|e| e.pipeline.clone())
    }

    /// Starts every pipeline with a scheduled time in `(after, upto]` — once, however many
    /// of its times fell in the window (a daemon that slept through several does not
    /// replay them). Refused starts are recorded and logged.
    pub async fn tick(
        self: &Arc<Self>,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
    ) -> Vec<JoinHandle<Result<Finished, StoreError>>> {
        let due: Vec<Arc<Pipeline>> = self
            .lock()
            .values()
            .filter(|e| {
                e.schedule
                    .as_ref()
                    .and_then(|s| s.next_after(after))
                    .is_some_and(|t| t.with_timezone(&Utc) <= upto)
            })
            .map(|e| e.pipeline.clone())
            .collect();
        let mut started = Vec::new();
        for pipeline in due {
            match self.launch(pipeline.clone(), Trigger::Schedule, None).await {
                Ok(run) => started.push(run.handle),
                Err(e) => tracing::warn!(pipeline = %pipeline.name, "{e}"),
            }
        }
        started
    }

    /// «Запустить сейчас»: starts a pipeline now, or says why not — refused starts (the
    /// pipeline is running, here or in another process) are recorded as runs too.
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        trigger: Trigger,
    ) -> Result<Started, StartError> {
        let pipeline = self
            .pipeline(name)
            .ok_or_else(|| StartError::Unknown(name.to_owned()))?;
        self.launch(pipeline, trigger, None).await
    }

    /// Starts pipeline `name` now, continuing the failed run `resume` describes
    /// («Продолжить»).
    pub async fn resume(
        self: &Arc<Self>,
        name: &str,
        resume: Resume,
    ) -> Result<Started, StartError> {
        let pipeline = self
            .pipeline(name)
            .ok_or_else(|| StartError::Unknown(name.to_owned()))?;
        self.launch(pipeline, Trigger::Manual, Some(Arc::new(resume)))
            .await
    }

    async fn launch(
        self: &Arc<Self>,
        pipeline: Arc<Pipeline>,
        trigger: Trigger,
        resume: Option<Arc<Resume>>,
    ) -> Result<Started, StartError> {
        if self.stop.is_cancelled() {
            return Err(StartError::Stopping);
        }
        let begun = run::begin(
            &*self.store,
            &pipeline.organization,
            &pipeline.source,
            Some(&pipeline.name),
            trigger,
        )
        .await
        .map_err(StartError::Store)?;
        let scope = match begun {
            Begun::Started(scope) => scope,
            Begun::Refused(refused) => {
                telemetry::record_run(&pipeline.name, &refused.report, Duration::ZERO);
                return Err(StartError::AlreadyRunning(refused));
            }
        };
        let run_id = scope.run_id.unwrap_or_default();
        let progress = Arc::new(Progress::new(Arc::new(telemetry::Metered)));
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id, progress.clone());
        let daemon = self.clone();
        let handle = self.tasks.spawn(async move {
            let finished = daemon
                .carry_out(&pipeline, scope, trigger, progress, resume)
                .await;
            daemon
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&run_id);
            finished
        });
        Ok(Started { run_id, handle })
    }

    async fn carry_out(
        &self,
        pipeline: &Pipeline,
        scope: Scope,
        trigger: Trigger,
        progress: Arc<Progress>,
        resume: Option<Arc<Resume>>,
    ) -> Result<Finished, StoreError> {
        let started = Instant::now();
        let run_id = scope.run_id.unwrap_or_default();
        tracing::info!(pipeline = %pipeline.name, run = run_id, trigger = trigger.as_str(), "run starts");
        let mut options = Options {
            chunk_size: pipeline.chunk_size,
            layout: pipeline.layout.clone(),
            observer: progress,
            stop: self.stop.child_token(),
            resume,
            ..Options::default()
        };
        let results = run::results_of(&mut options);
        let import = pipeline::import_files(&*self.store, &scope, &pipeline.files, options);
        let report = run::holding_lease(&*self.store, run_id, import).await;
        run::close_results(&*self.store, run_id, &results, &report).await;
        if let Err(e) = run::end(&*self.store, run_id, &report).await {
            tracing::error!(pipeline = %pipeline.name, error = %e, "the run could not be recorded");
            return Err(e);
        }
        telemetry::record_run(&pipeline.name, &report, started.elapsed());
        tracing::info!(
            pipeline = %pipeline.name,
            run = run_id,
            status = report.status.as_str(),
            records = report.records,
            "run ends"
        );
        if let Some(smtp) = &self.smtp {
            crate::notify::mail_run(
                &*self.store,
                smtp,
                &pipeline.notify,
                &pipeline.name,
                run_id,
                &report,
            )
            .await;
        }
        Ok(Finished {
            run_id,
            report,
            results_failed: None,
        })
    }

    /// Runs until `shutdown` resolves: sleeps until the next scheduled time, starts what is
    /// due, reloads on SIGHUP. Then stops the runs in progress (each finishes its chunk and
    /// ends `interrupted`) and waits for them.
    pub async fn serve(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut hangup = hangups();
        let mut last = Utc::now();
        let mut refresh = tokio::time::interval(STORED_REFRESH);
        loop {
            let wait = self
                .next_due(last)
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {
                    let now = Utc::now();
                    self.tick(last, now).await;
                    last = now;
                }
                Some(()) = next_hangup(&mut hangup) => {
                    if let Err(e) = self.reload() {
                        tracing::error!(error = %e, "cannot read the pipelines folder");
                    }
                }
                _ = refresh.tick() => {
                    if let Err(e) = self.load_stored().await {
                        tracing::error!(error = %e, "cannot read the console's pipelines");
                    }
                }
            }
        }
        tracing::warn!("stopping: runs in progress finish their chunk");
        self.shutdown().await;
    }

    /// Stops the runs in progress and waits for them to be recorded.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}
