//! Pipeline files (`pipelines/*.toml`, SPEC §7): read, checked key by key so every mistake
//! in a file is reported at once with its key, and resolved into a runnable [`Pipeline`].

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::pipeline::DEFAULT_CHUNK_SIZE;
use crate::schedule::Schedule;

/// A pipeline ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub name: String,
    pub organization: String,
    pub source: String,
    /// Addresses in the order given; local paths resolved against the pipeline file's folder.
    pub files: Vec<String>,
    pub chunk_size: usize,
    /// `minute hour day month weekday`, checked; `None` runs only when started by hand.
    pub schedule: Option<String>,
    /// The IANA zone of the schedule's clock (default UTC), checked.
    pub timezone: String,
    /// Where the report of every scheduled or manual run goes.
    pub notify: Vec<String>,
}

/// One mistake in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// Every mistake of one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.file, .errors))]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

fn render(file: &str, errors: &[ConfigError]) -> String {
    let mut s = format!("{file}: {} error(s)", errors.len());
    for e in errors {
        s.push_str(&format!("\n  {}: {}", e.key, e.message));
    }
    s
}

const KEYS: [&str; 8] = [
    "name",
    "organization",
    "source",
    "files",
    "chunk_size",
    "schedule",
    "timezone",
    "notify",
];

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |key: &str, message: String| ConfigErrors {
        file: file.clone(),
        errors: vec![ConfigError {
            key: key.into(),
            message,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail("(file)", format!("cannot read the file: {e}")))?;
    let table: Table = toml::from_str(&text).map_err(|e| {
        fail(
            "(syntax)",
            e.message().to_owned() + &span_note(&text, e.span()),
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&table, base).map_err(|errors| ConfigErrors { file, errors })
}

fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// Checks a parsed pipeline table; `base` is the folder relative local paths start from.
pub fn parse(table: &Table, base: &Path) -> Result<Pipeline, Vec<ConfigError>> {
    let mut errors = Vec::new();
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            add(
                &mut errors,
                key,
                format!("unknown key; the keys are {}", KEYS.join(", ")),
            );
        }
    }
    let name = text(table, "name", &mut errors);
    let organization = text(table, "organization", &mut errors);
    let source = text(table, "source", &mut errors);
    let files = files(table, &mut errors);
    let chunk_size = match table.get("chunk_size") {
        None => DEFAULT_CHUNK_SIZE,
        Some(Value::Integer(n)) if (1..=1_000_000).contains(n) => *n as usize,
        Some(other) => {
            add(
                &mut errors,
                "chunk_size",
                format!("must be a whole number from 1 to 1000000, not {other}"),
            );
            DEFAULT_CHUNK_SIZE
        }
    };
    let timezone = match table.get("timezone") {
        None => "UTC".to_owned(),
        Some(Value::String(tz)) if tz.trim().parse::<chrono_tz::Tz>().is_ok() => {
            tz.trim().to_owned()
        }
        Some(other) => {
            add(
                &mut errors,
                "timezone",
                format!("{other} is not an IANA time zone such as Europe/Moscow or UTC"),
            );
            "UTC".to_owned()
        }
    };
    let schedule = match table.get("schedule") {
        None => None,
        Some(Value::String(text)) => match Schedule::parse(text, Some(&timezone)) {
            Ok(_) => Some(text.trim().to_owned()),
            Err(e) => {
                add(&mut errors, "schedule", e.to_string());
                None
            }
        },
        Some(other) => {
            add(
                &mut errors,
                "schedule",
                format!(
                    "must be a string like \"0 3 * * *\", not {}",
                    other.type_str()
                ),
            );
            None
        }
    };
    let notify = notify(table, &mut errors);
    match (name, organization, source) {
        (Some(name), Some(organization), Some(source)) if errors.is_empty() => Ok(Pipeline {
            name,
            organization,
            source,
            files: files.iter().map(|f| resolve(f, base)).collect(),
            chunk_size,
            schedule,
            timezone,
            notify,
        }),
        _ => Err(errors),
    }
}

/// `notify`: e-mail addresses, as a list or one string separated by commas.
fn notify(table: &Table, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let addresses: Vec<(String, String)> = match table.get("notify") {
        None => return Vec::new(),
        Some(Value::String(s)) => split_addresses(s)
            .into_iter()
            .map(|a| ("notify".to_owned(), a))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    format!("notify[{i}]"),
                    v.as_str().unwrap_or_default().trim().to_owned(),
                )
            })
            .collect(),
        Some(other) => {
            add(
                errors,
                "notify",
                format!(
                    "must be a list of e-mail addresses, not {}",
                    other.type_str()
                ),
            );
            return Vec::new();
        }
    };
    let mut valid = Vec::new();
    for (key, address) in addresses {
        if email_address::EmailAddress::is_valid(&address) {
            valid.push(address);
        } else {
            add(
                errors,
                &key,
                format!("{address:?} is not an e-mail address"),
            );
        }
    }
    valid
}

fn add(errors: &mut Vec<ConfigError>, key: &str, message: String) {
    errors.push(ConfigError {
        key: key.to_owned(),
        message,
    });
}

/// A required, non-empty string.
fn text(table: &Table, key: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
    match table.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::String(_)) => {
            add(errors, key, "must not be empty".into());
            None
        }
        Some(other) => {
            add(
                errors,
                key,
                format!("must be a string, not {}", other.type_str()),
            );
            None
        }
        None => {
            add(errors, key, "is required".into());
            None
        }
    }
}

/// `files`: one string of addresses separated by commas, or a list of addresses.
fn files(table: &Table, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let files = match table.get("files") {
        Some(Value::String(s)) => split_addresses(s),
        Some(Value::Array(items)) => {
            let mut files = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.trim().is_empty() => files.push(s.trim().to_owned()),
                    other => add(
                        errors,
                        &format!("files[{i}]"),
                        format!("must be a non-empty string, not {other}"),
                    ),
                }
            }
            if items.is_empty() {
                add(errors, "files", "names no address".into());
            }
            return files;
        }
        Some(other) => {
            add(
                errors,
                "files",
                format!(
                    "must be a string of addresses separated by commas or a list, not {}",
                    other.type_str()
                ),
            );
            return Vec::new();
        }
        None => {
            add(
                errors,
                "files",
                "is required: the address(es) of the export(s)".into(),
            );
            return Vec::new();
        }
    };
    if files.is_empty() {
        add(errors, "files", "names no address".into());
    }
    files
}

/// The seed's «Адрес файла(ов)»: addresses separated by commas.
pub fn split_addresses(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A relative local path is relative to the pipeline file; URLs and absolute paths stay.
fn resolve(address: &str, base: &Path) -> String {
    if address.contains("://") {
        return address.to_owned();
    }
    let path = crate::source::local_path(address);
    if path.is_absolute() {
        return address.to_owned();
    }
    let joined: PathBuf = base.join(path);
    joined.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn addresses_split_on_commas_and_resolve_against_the_file() {
        let p = parse(
            &table("name = \"n\"\norganization = \"uo-1\"\nsource = \"1c\"\nfiles = \"a.xml, /data/b.xml ,https://x.example/c.xml\""),
            Path::new("pipelines"),
        )
        .unwrap();
        assert_eq!(
            p.files,
            vec!["pipelines/a.xml", "/data/b.xml", "https://x.example/c.xml"]
        );
        assert_eq!(p.chunk_size, DEFAULT_CHUNK_SIZE);
    }

    #[test]
    fn schedule_timezone_and_notify_are_checked() {
        let base = "name = \"n\"\norganization = \"uo-1\"\nsource = \"1c\"\nfiles = \"a.xml\"\n";
        let ok = parse(
            &table(&format!("{base}schedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"\nnotify = [\"ops@uo-1.example\"]")),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            (ok.schedule.as_deref(), ok.timezone.as_str()),
            (Some("0 3 * * *"), "Europe/Moscow")
        );
        assert_eq!(ok.notify, vec!["ops@uo-1.example"]);
        let errors = parse(
            &table(&format!("{base}schedule = \"0 3 * *\"\ntimezone = \"Moscow\"\nnotify = \"ops@uo-1.example, nobody\"")),
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["timezone", "schedule", "notify"]);
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let errors = parse(
            &table(
                "name = 3\nsource = \"\"\nfiles = [\"a.xml\", 5]\nchunk_size = 0\ncolour = \"red\"",
            ),
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "colour",
                "name",
                "organization",
                "source",
                "files[1]",
                "chunk_size"
            ]
        );
    }
}
