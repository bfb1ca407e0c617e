//! The settings form (SPEC §11): its fields as typed, the pipeline TOML they make — checked
//! by the same code as a pipeline file — and each mistake put back at its field.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use toml::{Table, Value};

use crate::config::{self, ConfigError, Pipeline};
use crate::secret::Secret;
use crate::store::StoredPipeline;

/// The form's fields, as the browser sent them (and as the page shows them again).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineForm {
    pub name: String,
    pub source: String,
    pub files: String,
    pub delete_after_read: bool,
    /// `settle_secs`, `min_records`, `max_shrink_percent` as typed; empty is the default.
    pub settle_secs: String,
    pub min_records: String,
    pub max_shrink_percent: String,
    /// `mode = "snapshot"`, and its `max_archive_percent` as typed.
    pub snapshot: bool,
    pub max_archive_percent: String,
    /// The layout file's path; empty for the native format.
    pub layout: String,
    pub notify: String,
    pub minute: String,
    pub hour: String,
    pub day: String,
    pub month: String,
    pub weekday: String,
    pub timezone: String,
    pub ftp_host: String,
    pub ftp_port: String,
    pub ftp_user: String,
    /// Typed now; never shown again.
    #[serde(skip)]
    pub ftp_password: String,
    pub ftp_tls: bool,
    pub ftp_passive: bool,
}

/// Mistakes by field (`form` for those of no one field).
pub type FieldErrors = BTreeMap<&'static str, String>;

impl PipelineForm {
    /// A new pipeline's defaults: nightly at 03:00 Moscow time, passive FTP on port 21.
    pub fn new_pipeline() -> PipelineForm {
        PipelineForm {
            minute: "0".into(),
            hour: "3".into(),
            day: "*".into(),
            month: "*".into(),
            weekday: "*".into(),
            timezone: "Europe/Moscow".into(),
            settle_secs: "5".into(),
            ftp_port: "21".into(),
            ftp_passive: true,
            ..PipelineForm::default()
        }
    }

    /// The fields of a posted form; a checkbox is on when it was sent at all.
    pub fn from_fields(fields: &HashMap<String, String>) -> PipelineForm {
        let text = |key: &str| {
            fields
                .get(key)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        PipelineForm {
            name: text("name"),
            source: text("source"),
            files: text("files"),
            delete_after_read: fields.contains_key("delete_after_read"),
            settle_secs: text("settle_secs"),
            min_records: text("min_records"),
            max_shrink_percent: text("max_shrink_percent"),
            snapshot: fields.contains_key("snapshot"),
            max_archive_percent: text("max_archive_percent"),
            layout: text("layout"),
            notify: text("notify"),
            minute: text("minute"),
            hour: text("hour"),
            day: text("day"),
            month: text("month"),
            weekday: text("weekday"),
            timezone: text("timezone"),
            ftp_host: text("ftp_host"),
            ftp_port: text("ftp_port"),
            ftp_user: text("ftp_user"),
            ftp_password: fields.get("ftp_password").cloned().unwrap_or_default(),
            ftp_tls: fields.contains_key("ftp_tls"),
            ftp_passive: fields.contains_key("ftp_passive"),
        }
    }

    /// The form of a loaded pipeline.
    pub fn of(p: &Pipeline) -> PipelineForm {
        let fields: Vec<&str> = p
            .schedule
            .as_deref()
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i).map(|f| (*f).to_owned()).unwrap_or_default();
        let ftp = p.files.ftp.as_deref();
        PipelineForm {
            name: p.name.clone(),
            source: p.source.clone(),
            files: p.files.addresses.join(", "),
            delete_after_read: p.files.delete_after_read,
            settle_secs: p.files.settle.as_secs().to_string(),
            min_records: p
                .files
                .min_records
                .map(|n| n.to_string())
                .unwrap_or_default(),
            max_shrink_percent: p
                .files
                .max_shrink_percent
                .map(|n| n.to_string())
                .unwrap_or_default(),
            snapshot: p.files.snapshot.is_some(),
            max_archive_percent: p.files.snapshot.map(|n| n.to_string()).unwrap_or_default(),
            layout: if p.layout.native {
                String::new()
            } else {
                p.layout.name.clone()
            },
            notify: p.notify.join(", "),
            minute: field(0),
            hour: field(1),
            day: field(2),
            month: field(3),
            weekday: field(4),
            timezone: p.timezone.clone(),
            ftp_host: ftp.map(|f| f.host.clone()).unwrap_or_default(),
            ftp_port: ftp.map_or_else(|| "21".to_owned(), |f| f.port.to_string()),
            ftp_user: ftp
                .map(|f| f.user.clone())
                .filter(|u| u != "anonymous")
                .unwrap_or_default(),
            ftp_password: String::new(),
            ftp_tls: ftp.is_some_and(|f| f.tls),
            ftp_passive: ftp.is_none_or(|f| f.passive),
        }
    }

    /// The schedule the five inputs make; `None` when all are empty (run-now only).
    fn schedule(&self) -> Option<String> {
        let fields = [
            &self.minute,
            &self.hour,
            &self.day,
            &self.month,
            &self.weekday,
        ];
        if fields.iter().all(|f| f.is_empty()) {
            return None;
        }
        let fields: Vec<&str> = fields
            .iter()
            .map(|f| if f.is_empty() { "*" } else { f.as_str() })
            .collect();
        Some(fields.join(" "))
    }

    /// The pipeline TOML the form makes (without the organization, which is the signed-in
    /// user's), checked as a pipeline file of `org` is. `has_password`: a password was
    /// typed, or one is stored, in place of `ftp.password_env`.
    pub fn to_definition(&self, org: &str, has_password: bool) -> Result<String, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut table = Table::new();
        let list = |text: &str| {
            Value::Array(
                config::split_addresses(text)
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            )
        };
        table.insert("name".into(), Value::String(self.name.clone()));
        table.insert("source".into(), Value::String(self.source.clone()));
        table.insert("files".into(), list(&self.files));
        if self.delete_after_read {
            table.insert("delete_after_read".into(), Value::Boolean(true));
        }
        if self.snapshot {
            table.insert("mode".into(), Value::String("snapshot".into()));
        }
        if !self.layout.is_empty() {
            table.insert("layout".into(), Value::String(self.layout.clone()));
        }
        for (key, typed) in [
            ("settle_secs", &self.settle_secs),
            ("min_records", &self.min_records),
            ("max_shrink_percent", &self.max_shrink_percent),
            ("max_archive_percent", &self.max_archive_percent),
        ] {
            // Not a number: kept as typed, for the pipeline check's message at its field.
            let value = typed
                .parse()
                .map_or_else(|_| Value::String(typed.clone()), Value::Integer);
            if !typed.is_empty() {
                table.insert(key.into(), value);
            }
        }
        if !self.notify.is_empty() {
            table.insert("notify".into(), list(&self.notify));
        }
        if let Some(schedule) = self.schedule() {
            table.insert("schedule".into(), Value::String(schedule));
        }
        if !self.timezone.is_empty() {
            table.insert("timezone".into(), Value::String(self.timezone.clone()));
        }
        if !self.ftp_host.is_empty() {
            let mut ftp = Table::new();
            ftp.insert("host".into(), Value::String(self.ftp_host.clone()));
            match self.ftp_port.parse::<u16>() {
                Ok(port) if port > 0 => {
                    ftp.insert("port".into(), Value::Integer(i64::from(port)));
                }
                _ if self.ftp_port.is_empty() => {}
                _ => {
                    errors.insert("ftp_port", "Порт — число от 1 до 65535.".into());
                }
            }
            if !self.ftp_user.is_empty() {
                ftp.insert("user".into(), Value::String(self.ftp_user.clone()));
            }
            ftp.insert("tls".into(), Value::Boolean(self.ftp_tls));
            ftp.insert("passive".into(), Value::Boolean(self.ftp_passive));
            table.insert("ftp".into(), Value::Table(ftp));
        } else if !self.ftp_password.is_empty() {
            errors.insert("ftp_host", "Пароль задан, а сервер нет.".into());
        }
        let definition = toml::to_string(&table).unwrap_or_default();
        let mut checked = table;
        checked.insert("organization".into(), Value::String(org.to_owned()));
        // Only whether there is a password matters to the check, not the password.
        let password = has_password.then(|| Secret::new(""));
        if let Err(found) = config::parse_with(&checked, Path::new("."), password) {
            for e in found {
                let (field, message) = at_field(&e);
                errors.entry(field).or_insert(message);
            }
        }
        if self.name.is_empty() {
            errors.insert("name", "Укажите название.".into());
        }
        if errors.is_empty() {
            Ok(definition)
        } else {
            Err(errors)
        }
    }
}

impl PipelineForm {
    /// The runnable pipeline the form describes, with `password` as its FTP password.
    pub fn pipeline(&self, org: &str, password: Option<Secret>) -> Result<Pipeline, FieldErrors> {
        let definition = self.to_definition(org, password.is_some())?;
        let stored = StoredPipeline {
            organization: org.to_owned(),
            name: self.name.clone(),
            definition,
            ftp_password: None,
        };
        let mut table: Table = toml::from_str(&stored.definition).unwrap_or_default();
        table.insert("organization".into(), Value::String(org.to_owned()));
        config::parse_with(&table, Path::new("."), password).map_err(|found| {
            found
                .iter()
                .map(at_field)
                .fold(FieldErrors::new(), |mut errors, (f, m)| {
                    errors.entry(f).or_insert(m);
                    errors
                })
        })
    }
}

/// Mistakes by the pipeline file's keys, put at the form's fields.
pub fn at_fields(found: &[ConfigError]) -> FieldErrors {
    found
        .iter()
        .map(at_field)
        .fold(FieldErrors::new(), |mut errors, (field, message)| {
            errors.entry(field).or_insert(message);
            errors
        })
}

/// The field a pipeline file's key is typed into, and the message to show there.
fn at_field(e: &ConfigError) -> (&'static str, String) {
    let field = match e.key.as_str() {
        "name" => "name",
        "source" => "source",
        "files" => "files",
        "delete_after_read" => "delete_after_read",
        "settle_secs" => "settle_secs",
        "min_records" => "min_records",
        "max_shrink_percent" => "max_shrink_percent",
        "mode" => "snapshot",
        "max_archive_percent" => "max_archive_percent",
        "layout" => "layout",
        "notify" => "notify",
        "schedule" => "schedule",
        "timezone" => "timezone",
        "ftp.host" => "ftp_host",
        "ftp.port" => "ftp_port",
        "ftp.user" => "ftp_user",
        "ftp.password_env" | "ftp.password" => "ftp_password",
        "ftp.tls" => "ftp_tls",
        "ftp.passive" => "ftp_passive",
        _ => "form",
    };
    let message = match (field, e.key.as_str()) {
        ("ftp_password", "ftp.password_env") => "Для этого пользователя нужен пароль.".to_owned(),
        ("ftp_password", _) => format!("Пароль не сохранён: {}", e.message),
        ("delete_after_read", _) if !e.message.contains("true or false") => {
            "Удалять файлы можно только с FTP-сервера: укажите сервер.".to_owned()
        }
        ("name", _) if e.message.contains("pipeline file") => {
            "Это название занято выгрузкой, заданной файлом.".to_owned()
        }
        ("name", _) if e.message.contains("already exists") => {
            "Такое название уже есть.".to_owned()
        }
        _ => e.message.clone(),
    };
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> PipelineForm {
        PipelineForm {
            name: "nightly".into(),
            source: "1c".into(),
            files: "/exports/a.xml, /exports/b.xml".into(),
            ..PipelineForm::new_pipeline()
        }
    }

    #[test]
    fn a_filled_form_makes_the_toml_of_a_pipeline_file() {
        let definition = form().to_definition("uo-1", false).unwrap();
        let table: Table = toml::from_str(&definition).unwrap();
        assert_eq!(table["schedule"].as_str(), Some("0 3 * * *"));
        assert_eq!(table["files"].as_array().unwrap().len(), 2);
        assert!(!table.contains_key("organization"));
    }

    #[test]
    fn each_mistake_is_put_at_its_field() {
        let mut bad = form();
        bad.hour = "25".into();
        bad.timezone = "Mars/Olympus".into();
        bad.ftp_host = "ftp.example.ru".into();
        bad.ftp_port = "70000".into();
        bad.ftp_user = "uo".into();
        bad.source = String::new();
        let errors = bad.to_definition("uo-1", false).unwrap_err();
        for field in ["schedule", "timezone", "ftp_port", "ftp_password", "source"] {
            assert!(errors.contains_key(field), "{field}: {errors:?}");
        }
        // A password (typed or stored) satisfies the FTP user.
        bad.hour = "3".into();
        bad.timezone = "UTC".into();
        bad.ftp_port = "21".into();
        bad.source = "1c".into();
        assert!(bad.to_definition("uo-1", true).is_ok());
    }
}
