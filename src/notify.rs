//! The e-mail report of a run (SPEC §8), sent over SMTP with lettre. A mail that cannot be
//! sent is logged and noted on the run; it never changes the run's outcome.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::report::{RunReport, Status};
use crate::store::Store;

/// How to reach the mail server; from the daemon's (or `run --notify`'s) options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    /// The environment variable that holds the password; read when sending.
    pub password_env: Option<String>,
    pub from: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// STARTTLS on the submission port (587): required, never downgraded.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the SMTP password is missing: set the environment variable {0}")]
    Password(String),
    #[error("{0:?} is not an e-mail address")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("the mail server refused or failed: {0}")]
    Smtp(String),
}

/// A report ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The report as an e-mail: a short OK when there is nothing to say, otherwise the counts,
/// the warnings grouped by code (capped, with the total) and the error with its position.
pub fn compose(pipeline: &str, run_id: i64, report: &RunReport) -> Mail {
    let status = report.status.as_str().to_uppercase();
    let quiet = report.status == Status::Ok
        && report.warnings_total == 0
        && report.archived.total() + report.restored.total() == 0;
    let subject = if report.status == Status::Ok && report.warnings_total > 0 {
        format!(
            "[crm-import] {pipeline}: OK with {} warning(s)",
            report.warnings_total
        )
    } else {
        format!("[crm-import] {pipeline}: {status}")
    };
    let mut text = format!("Pipeline {pipeline}, run {run_id}: {status}.\n");
    if quiet {
        let _ = writeln!(
            text,
            "{} records imported from {} file(s) without errors or warnings.",
            report.records,
            report.files.len()
        );
    } else {
        text.push('\n');
        text.push_str(&report.summary());
    }
    let html = format!(
        "<html><body><p><b>Pipeline {}, run {run_id}: {status}</b></p>{}</body></html>",
        escape(pipeline),
        html_body(report, quiet)
    );
    Mail {
        subject,
        text,
        html,
    }
}

fn html_body(report: &RunReport, quiet: bool) -> String {
    let mut h = String::new();
    if quiet {
        let _ = write!(
            h,
            "<p>{} records imported from {} file(s) without errors or warnings.</p>",
            report.records,
            report.files.len()
        );
        return h;
    }
    let c = &report.counts;
    let _ = write!(
        h,
        "<table border=\"1\" cellpadding=\"4\"><tr><th></th><th>created</th><th>updated</th><th>unchanged</th><th>merged</th><th>external id added</th></tr>\
         <tr><td>premises</td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td></tr>\
         <tr><td>accounts</td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td></tr>\
         <tr><td>clients</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        c.premise.created,
        c.premise.updated,
        c.premise.unchanged,
        c.account.created,
        c.account.updated,
        c.account.unchanged,
        c.client.created,
        c.client.updated,
        c.client.unchanged,
        c.client.merged,
        c.client.external_id_added
    );
    for (what, counts) in [
        ("Archived", &report.archived),
        ("Restored", &report.restored),
    ] {
        if counts.total() > 0 {
            let _ = write!(
                h,
                "<p>{what} (full snapshot): {} premises, {} accounts, {} client links</p>",
                counts.premises, counts.accounts, counts.links
            );
        }
    }
    if report.warnings_total > 0 {
        let _ = write!(h, "<p>Warnings: {} in all</p><ul>", report.warnings_total);
        for w in &report.warnings {
            let _ = write!(
                h,
                "<li><code>{}</code> ×{} — first at {}:{}:{}: {}</li>",
                w.code,
                w.count,
                escape(&w.file),
                w.line,
                w.column,
                escape(&w.message)
            );
        }
        h.push_str("</ul>");
    }
    if let Some(e) = &report.error {
        let at = e.place();
        let _ = write!(
            h,
            "<p><b>Error <code>{}</code></b> at {}: {}</p><p>Nothing after it was applied; everything before it is kept.</p>",
            e.code,
            escape(&at),
            escape(&e.message)
        );
    }
    h
}

/// Text into HTML: the five characters that mean something there.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Sends one mail to every address.
pub async fn send(smtp: &Smtp, to: &[String], mail: &Mail) -> Result<(), NotifyError> {
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|_| NotifyError::Address(a.to_owned()))
    };
    let mut message = Message::builder()
        .from(mailbox(&smtp.from)?)
        .subject(mail.subject.clone());
    for address in to {
        message = message.to(mailbox(address)?);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| NotifyError::Message(e.to_string()))?;
    let smtp_error = |e: lettre::transport::smtp::Error| NotifyError::Smtp(e.to_string());
    let mut builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(smtp_error)?
        }
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(smtp_error)?
        }
    }
    .port(smtp.port)
    .timeout(Some(smtp.timeout));
    if let Some(user) = &smtp.user {
        let password = match &smtp.password_env {
            Some(var) => std::env::var(var).map_err(|_| NotifyError::Password(var.clone()))?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder.build().send(message).await.map_err(smtp_error)?;
    Ok(())
}

/// Mails a run's report and notes the outcome on the run; returns the note. A failure is
/// logged, never fatal.
pub async fn mail_run<S: Store>(
    store: &S,
    smtp: &Smtp,
    to: &[String],
    pipeline: &str,
    run_id: i64,
    report: &crate::report::RunReport,
) -> String {
    if to.is_empty() {
        return "no notify addresses in the pipeline".into();
    }
    let mail = compose(pipeline, run_id, report);
    let note = match send(smtp, to, &mail).await {
        Ok(()) => format!("sent to {} address(es)", to.len()),
        Err(e) => {
            tracing::error!(run_id, error = %e, "the report mail failed");
            format!("failed: {e}")
        }
    };
    if let Err(e) = store.note_mail(run_id, &note).await {
        tracing::error!(run_id, error = %e, "cannot record the mail outcome");
    }
    note
}
