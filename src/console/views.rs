//! What the pages show, in the seed's words: run statuses, triggers, times and durations,
//! and the templates that lay them out.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use minijinja::Environment;
use serde::Serialize;

use crate::config::Pipeline;
use crate::schedule::Schedule;
use crate::store::{RunRow, RunStatus, Trigger};

/// The templates, compiled once. A template that does not compile is logged and its pages
/// answer with an error page; the tests render every page.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("pipelines.html", include_str!("templates/pipelines.html")),
        ("pipeline.html", include_str!("templates/pipeline.html")),
        ("runs.html", include_str!("templates/runs.html")),
        ("run.html", include_str!("templates/run.html")),
        ("message.html", include_str!("templates/message.html")),
        ("upload.html", include_str!("templates/upload.html")),
        (
            "pipeline_form.html",
            include_str!("templates/pipeline_form.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "a console template does not compile");
        }
    }
    env
});

/// Renders a page; `Err` carries what went wrong, for the error page.
pub fn render(name: &str, context: minijinja::Value) -> Result<String, String> {
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|e| format!("the page {name} cannot be shown: {e}"))
}

/// A run's status as SPEC §11 words it, and its colour class.
pub fn status_words(status: RunStatus, warnings: u64) -> (String, &'static str) {
    match status {
        RunStatus::Ok if warnings > 0 => (format!("OK, предупреждений: {warnings}"), "warn"),
        RunStatus::Ok => ("OK".to_owned(), "ok"),
        RunStatus::Error => ("Ошибка".to_owned(), "bad"),
        RunStatus::Interrupted => ("Прервано".to_owned(), "warn"),
        RunStatus::Refused => ("Отклонено".to_owned(), "muted"),
        RunStatus::Running => ("Выполняется".to_owned(), "muted"),
    }
}

/// How a run was started, in words.
pub fn trigger_words(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Schedule => "по расписанию",
        Trigger::Manual => "вручную",
        Trigger::Api => "через API",
    }
}

/// A stored RFC 3339 time as the staff reads it, in UTC.
pub fn time_words(stored: &str) -> String {
    DateTime::parse_from_rfc3339(stored)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%d.%m.%Y %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| stored.to_owned())
}

/// The time between two stored times, as `1 мин 05 с`.
pub fn duration_words(started: &str, finished: Option<&str>) -> Option<String> {
    let start = DateTime::parse_from_rfc3339(started).ok()?;
    let end = DateTime::parse_from_rfc3339(finished?).ok()?;
    let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
    Some(if secs < 60.0 {
        format!("{secs:.1} с")
    } else {
        format!("{} мин {:02} с", (secs / 60.0) as u64, (secs % 60.0) as u64)
    })
}

/// A run as a row of the history.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: i64,
    pub pipeline: Option<String>,
    pub trigger: &'static str,
    pub started: String,
    pub duration: Option<String>,
    pub status: String,
    pub class: &'static str,
    pub records: u64,
    pub running: bool,
    /// A pipeline's run that failed or was stopped: «Продолжить» continues it.
    pub resumable: bool,
}

impl RunView {
    /// `report` is the stored report, for its warnings count.
    pub fn new(row: &RunRow, report: Option<&serde_json::Value>) -> RunView {
        let warnings = report
            .and_then(|r| r["warnings_total"].as_u64())
            .unwrap_or(0);
        let (status, class) = status_words(row.status, warnings);
        RunView {
            id: row.id,
            pipeline: row.pipeline.clone(),
            trigger: trigger_words(row.trigger),
            started: time_words(&row.started_at),
            duration: duration_words(&row.started_at, row.finished_at.as_deref()),
            status,
            class,
            records: row.records,
            running: row.status == RunStatus::Running,
            resumable: row.pipeline.is_some()
                && matches!(row.status, RunStatus::Error | RunStatus::Interrupted),
        }
    }
}

/// A pipeline as its page shows it.
#[derive(Debug, Serialize)]
pub struct PipelineView {
    pub name: String,
    pub source: String,
    pub addresses: String,
    pub delete_after_read: bool,
    /// The guards, in words: the settle wait, and the least and the shrink allowed.
    pub guards: String,
    pub notify: String,
    pub schedule: String,
    pub timezone: Option<String>,
    /// The FTP server, without its password.
    pub ftp: Option<String>,
    /// The next run times, in the pipeline's zone.
    pub upcoming: Vec<String>,
    pub next: Option<String>,
}

impl PipelineView {
    pub fn new(p: &Pipeline, now: DateTime<Utc>) -> PipelineView {
        let schedule = p
            .schedule
            .as_deref()
            .and_then(|s| Schedule::parse(s, Some(&p.timezone)).ok());
        let upcoming: Vec<String> = schedule
            .as_ref()
            .map(|s| {
                s.upcoming(now, 5)
                    .iter()
                    .map(|t| t.format("%d.%m.%Y %H:%M").to_string())
                    .collect()
            })
            .unwrap_or_default();
        PipelineView {
            name: p.name.clone(),
            source: p.source.clone(),
            addresses: p.files.addresses.join(", "),
            delete_after_read: p.files.delete_after_read,
            guards: guards(&p.files),
            notify: p.notify.join(", "),
            schedule: schedule.as_ref().map_or_else(
                || "не задано (только «Запустить сейчас»)".to_owned(),
                Schedule::describe,
            ),
            timezone: schedule.as_ref().map(|_| p.timezone.clone()),
            ftp: p
                .files
                .ftp
                .as_ref()
                .map(|f| format!("{}:{}", f.host, f.port)),
            next: upcoming.first().cloned(),
            upcoming,
        }
    }
}

/// «ждать 5 с; не меньше 1000 записей; сокращение не больше 50 %».
fn guards(files: &crate::source::Files) -> String {
    let mut words = vec![match files.settle.as_secs() {
        0 => "не ждать, пока файл допишется".to_owned(),
        n => format!("ждать, пока файл допишется, {n} с"),
    }];
    if let Some(n) = files.min_records {
        words.push(format!("не меньше {n} записей в файле"));
    }
    if let Some(n) = files.max_shrink_percent {
        words.push(format!("сокращение выгрузки не больше {n} %"));
    }
    if let Some(n) = files.snapshot {
        words.push(format!(
            "полный снимок: чего нет в файлах, уходит в архив (не больше {n} % за запуск)"
        ));
    }
    words.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_the_spec_words_them() {
        assert_eq!(status_words(RunStatus::Ok, 0).0, "OK");
        assert_eq!(status_words(RunStatus::Ok, 3).0, "OK, предупреждений: 3");
        assert_eq!(status_words(RunStatus::Error, 0).0, "Ошибка");
        assert_eq!(status_words(RunStatus::Interrupted, 0).0, "Прервано");
        assert_eq!(status_words(RunStatus::Refused, 0).0, "Отклонено");
        assert_eq!(status_words(RunStatus::Running, 0).0, "Выполняется");
    }

    #[test]
    fn every_template_compiles() {
        for name in [
            "base.html",
            "login.html",
            "pipelines.html",
            "pipeline.html",
            "runs.html",
            "run.html",
            "message.html",
            "upload.html",
            "pipeline_form.html",
        ] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn durations_in_words() {
        let d = |a, b| duration_words(a, Some(b)).unwrap();
        assert_eq!(
            d("2026-12-06T03:00:00.000Z", "2026-12-06T03:00:02.500Z"),
            "2.5 с"
        );
        assert_eq!(
            d("2026-12-06T03:00:00.000Z", "2026-12-06T03:01:05.000Z"),
            "1 мин 05 с"
        );
        assert_eq!(duration_words("2026-12-06T03:00:00.000Z", None), None);
    }
}
