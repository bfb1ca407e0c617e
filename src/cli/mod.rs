//! The command line: parses arguments ([`args`]), runs one command (a module per group),
//! and maps its result to an exit code ([`output`]; SPEC §6: 0 ok, 1 import error, 2 bad
//! configuration or usage).

mod admin;
mod args;
mod import;
mod output;
mod service;
mod tools;

use std::process::ExitCode;

pub use args::Cli;

use args::{Command, Db, RunsCommand};
use import::Resuming;
use output::{Exit, Failure};

use crate::generate;
use crate::run::Job;
use crate::source::Files;
use crate::store::{self, RunFilter, StoreError, Trigger};

/// Runs the command; its exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let exit = match dispatch(cli.command).await {
        Ok(()) => Exit::Ok,
        Err(failure) => {
            if let Some(message) = &failure.message {
                eprintln!("crm-import: {message}");
            }
            failure.exit
        }
    };
    ExitCode::from(exit as u8)
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Import {
            files,
            org,
            source,
            db,
            outputs,
            chunk_size,
            resume,
            layout,
        } => {
            let files = Files::local(&files);
            let layout = import::layout(layout.as_deref())?;
            let job = Job {
                pipeline: None,
                org: &org,
                source: &source,
                files: &files,
                trigger: Trigger::Manual,
            };
            let resume = resume.map_or(Resuming::No, Resuming::Run);
            import::import_files(&job, &db, outputs, chunk_size, layout, resume).await
        }
        Command::Run {
            pipeline,
            db,
            outputs,
            notify,
            smtp,
            resume,
        } => {
            let smtp = match (notify, smtp.settings()) {
                (false, _) => None,
                (true, Some(smtp)) => Some(smtp),
                (true, None) => {
                    return Err(Failure::config(
                        "--notify needs a mail server: --smtp-host or CRM_SMTP_HOST",
                    ));
                }
            };
            let resume = if resume {
                Resuming::LastFailed
            } else {
                Resuming::No
            };
            import::run_pipeline(&pipeline, &db, outputs, smtp, resume).await
        }
        Command::Daemon {
            pipelines,
            db,
            listen,
            smtp,
        } => service::daemon(&pipelines, &db, listen, smtp.settings()).await,
        Command::Serve {
            listen,
            db,
            pipelines,
            body_limit_mib,
        } => service::serve(listen, &db, pipelines.as_deref(), body_limit_mib).await,
        Command::Token { command, db } => admin::token(command, &db).await,
        Command::User { command, db } => admin::user(command, &db).await,
        Command::Runs {
            show: Some(RunsCommand::Show { id }),
            db,
            ..
        } => admin::show_run(id, &db).await,
        Command::Runs {
            show: None,
            pipeline,
            org,
            limit,
            db,
        } => {
            let filter = RunFilter {
                org,
                pipeline,
                limit,
            };
            admin::list_runs(&filter, &db).await
        }
        Command::Check { files, layout } => {
            let layout = import::layout(layout.as_deref())?;
            import::check(&files, &layout).await
        }
        Command::Export {
            org,
            include_archived,
            db,
        } => import::export(&org, include_archived, &db).await,
        Command::Generate {
            premises,
            clients,
            seed,
            out,
        } => tools::generate(
            generate::Spec {
                premises,
                clients,
                seed,
            },
            out,
        ),
        Command::Login { phone, db } => admin::login(&phone, &db).await,
        Command::Schedule {
            expression,
            tz,
            next,
            from,
        } => tools::schedule(&expression, &tz, next, from),
    }
}

/// Opens the database the options name; a database that cannot be opened is a
/// configuration error (exit 2).
async fn open_store(db: &Db) -> Result<store::AnyStore, Failure> {
    store::open(&db.url, &db.settings())
        .await
        .map_err(|e| match e {
            StoreError::DiskFull(_) => Failure::from(e),
            _ => Failure::config(format!("{e} [{}]", e.code())),
        })
}
