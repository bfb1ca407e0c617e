//! The command line's arguments (clap): every command, its options and their defaults.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::notify::{Smtp, SmtpTls};
use crate::stage::DEFAULT_CHUNK_SIZE;
use crate::store::{self, DEFAULT_URL};

#[derive(Debug, Parser)]
#[command(
    name = "crm-import",
    version,
    about = "Import premises, accounts and residents into the CRM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What a run writes beside its summary.
#[derive(Debug, Clone, clap::Args)]
pub struct Outputs {
    /// Write the JSON report here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Write a line per record here: a .csv (for Excel: UTF-8 with BOM, `;`) or a .ndjson file.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import XML exports (paths, file: URLs, http(s) links, `folder/*.xml`) in the order given; stops at the first error.
    Import {
        #[arg(required = true)]
        files: Vec<String>,
        /// Organization code, e.g. uo-1.
        #[arg(long)]
        org: String,
        /// Source (accounting system) code, e.g. 1c.
        #[arg(long)]
        source: String,
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        outputs: Outputs,
        /// Records planned and written together (SQLite may commit several chunks at once).
        #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE, value_parser = parse_chunk_size)]
        chunk_size: usize,
        /// Continue failed run RUN_ID: skip what it committed (after checking each file reads
        /// the same up to there) and apply the rest.
        #[arg(long, value_name = "RUN_ID")]
        resume: Option<i64>,
        /// A layout file (layouts/*.toml) saying where the fields are in a foreign export:
        /// XML with its own tags, CSV or XLSX.
        #[arg(long, value_name = "FILE")]
        layout: Option<PathBuf>,
    },
    /// Run a pipeline (pipelines/*.toml) now («Запустить сейчас»), with the same report and
    /// exit codes as import.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        outputs: Outputs,
        /// Mail the report to the pipeline's `notify` list, as a scheduled run does.
        #[arg(long)]
        notify: bool,
        /// Continue the pipeline's last run, which failed: skip what it committed and apply
        /// the rest.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        smtp: SmtpArgs,
    },
    /// Run every pipeline of a folder on its schedule; mail reports; serve the API and /metrics on --listen.
    Daemon {
        /// The folder of pipeline files.
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        #[command(flatten)]
        db: Db,
        /// Serve /healthz and /metrics here (e.g. 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        smtp: SmtpArgs,
    },
    /// Serve the HTTP API (and /metrics) without running schedules.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        db: Db,
        /// Pipelines that POST /api/v1/pipelines/{name}/run may start.
        #[arg(long)]
        pipelines: Option<PathBuf>,
        /// Largest body read whole (JSON pushes, logins), in MiB; NDJSON and XML stream.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
        body_limit_mib: u32,
    },
    /// API tokens: create (printed once), list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        db: Db,
    },
    /// Staff accounts of the web console: add (the password from a prompt, or from
    /// CRM_USER_PASSWORD when not on a terminal), list, remove.
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        db: Db,
    },
    /// Run history: the latest runs, or one run's report (`runs show ID`).
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
        /// Only this pipeline's runs.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only this organization's runs.
        #[arg(long)]
        org: Option<String>,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        db: Db,
    },
    /// Validate exports without writing anything; lists every error.
    Check {
        #[arg(required = true)]
        files: Vec<String>,
        /// A layout file; the first records are printed as they will be imported.
        #[arg(long, value_name = "FILE")]
        layout: Option<PathBuf>,
    },
    /// Print an organization's data as NDJSON in a deterministic order.
    Export {
        #[arg(long)]
        org: String,
        /// Include what snapshot runs archived (marked with `archived_run`).
        #[arg(long)]
        include_archived: bool,
        #[command(flatten)]
        db: Db,
    },
    /// Write a deterministic, realistic export (Russian names, addresses, phone spellings).
    Generate {
        #[arg(long)]
        premises: u64,
        #[arg(long)]
        clients: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the next run times of a schedule (`minute hour day month weekday`, all
    /// non-`*` fields must match).
    Schedule {
        /// E.g. "0 3 * * *".
        expression: String,
        /// IANA time zone of the schedule's clock.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// How many run times to print.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        next: u16,
        /// Count from this moment (RFC 3339) instead of now.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
    /// Mark every card with this phone as logged in (what the residents' app reports).
    Login {
        phone: String,
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for an organization (or the residents' app) and print it once.
    Create {
        /// The organization the token writes and reads.
        #[arg(long, required_unless_present = "app", conflicts_with = "app")]
        org: Option<String>,
        /// A token for the residents' app: it may only report logins.
        #[arg(long)]
        app: bool,
        /// What the token is for (shown in `token list`).
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List tokens (never the tokens themselves: only their hashes are kept).
    List,
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a staff account to an organization.
    Add {
        /// The organization whose pipelines and runs the account sees, e.g. uo-1.
        #[arg(long)]
        org: String,
        /// The name typed into «Логин».
        #[arg(long)]
        login: String,
    },
    /// List the accounts (never their passwords).
    List,
    /// Remove an account; its sessions end at once.
    Remove { login: String },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Print one run's JSON report.
    Show { id: i64 },
}

/// The mail server for reports (SPEC §8); every option also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct SmtpArgs {
    /// SMTP server host; without it, no report is mailed.
    #[arg(long, env = "CRM_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port (587 for STARTTLS, 465 for TLS, 25 for a plain relay).
    #[arg(long, env = "CRM_SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,
    #[arg(long, env = "CRM_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    #[arg(long, env = "CRM_SMTP_USER")]
    pub smtp_user: Option<String>,
    /// The environment variable that holds the SMTP password (never the password itself).
    #[arg(long, env = "CRM_SMTP_PASSWORD_ENV")]
    pub smtp_password_env: Option<String>,
    /// The sender of reports.
    #[arg(long, env = "CRM_MAIL_FROM", default_value = "crm-import@localhost")]
    pub mail_from: String,
}

impl SmtpArgs {
    pub fn settings(&self) -> Option<Smtp> {
        self.smtp_host.as_ref().map(|host| Smtp {
            host: host.clone(),
            port: self.smtp_port,
            tls: self.smtp_tls,
            user: self.smtp_user.clone(),
            password_env: self.smtp_password_env.clone(),
            from: self.mail_from.clone(),
            timeout: std::time::Duration::from_secs(30),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct Db {
    /// Database URL (sqlite:PATH or postgres://USER@HOST/DB); falls back to DATABASE_URL,
    /// then to sqlite:crm.db.
    #[arg(long = "db", env = "DATABASE_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// SQLite page cache of the writing connection, in MiB (readers get an eighth each); a
    /// transaction held across chunks commits after 1,875 records per MiB of it.
    #[arg(long, global = true, default_value_t = store::Settings::default().cache_mib, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cache_mib: u32,
    /// Seconds a run's lease on its pipeline lasts without renewal (renewed every third):
    /// how soon another process may start a pipeline whose runner crashed.
    #[arg(long, global = true, env = "CRM_LEASE_SECS", default_value_t = store::Settings::default().lease_secs, value_parser = clap::value_parser!(u32).range(3..=86_400))]
    pub lease_secs: u32,
}

fn parse_chunk_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1_000_000) => Ok(n),
        _ => Err(format!("{s:?} is not a chunk size from 1 to 1000000")),
    }
}

impl Db {
    /// The store's tuning as the options set it.
    pub fn settings(&self) -> store::Settings {
        store::Settings {
            cache_mib: self.cache_mib,
            lease_secs: self.lease_secs,
        }
    }
}
