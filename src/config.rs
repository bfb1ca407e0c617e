//! Pipeline files (`pipelines/*.toml`, SPEC §7): read, checked key by key so every mistake
//! in a file is reported at once with its key, and resolved into a runnable [`Pipeline`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::{Table, Value};

use crate::layout::Layout;
pub use crate::mistakes::{ConfigError, ConfigErrors};
use crate::mistakes::{add, toml_table, unknown_keys};
use crate::schedule::Schedule;
use crate::secret::{Secret, SecretError, SecretKey};
use crate::source::{Files, FtpSettings};
use crate::stage::DEFAULT_CHUNK_SIZE;
use crate::store::StoredPipeline;

/// A pipeline ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub name: String,
    pub organization: String,
    pub source: String,
    /// Addresses in the order given (local paths resolved against the pipeline file's
    /// folder), the FTP server they are on, and whether to delete them after reading.
    pub files: Files,
    pub chunk_size: usize,
    /// `minute hour day month weekday`, checked; `None` runs only when started by hand.
    pub schedule: Option<String>,
    /// The IANA zone of the schedule's clock (default UTC), checked.
    pub timezone: String,
    /// Where the report of every scheduled or manual run goes.
    pub notify: Vec<String>,
    /// Where the fields are in the files (`layout = "layouts/….toml"`); native by default.
    pub layout: Arc<Layout>,
}

/// A snapshot archives at most this share (percent) of its source's rows unless told more:
/// a file that lost a tenth of the houses is far likelier broken than a tenth moved out.
pub const DEFAULT_MAX_ARCHIVE_PERCENT: u64 = 10;

const KEYS: [&str; 16] = [
    "name",
    "organization",
    "source",
    "files",
    "ftp",
    "delete_after_read",
    "settle_secs",
    "min_records",
    "max_shrink_percent",
    "mode",
    "max_archive_percent",
    "chunk_size",
    "schedule",
    "timezone",
    "notify",
    "layout",
];

const FTP_KEYS: [&str; 8] = [
    "host",
    "port",
    "user",
    "password_env",
    "tls",
    "passive",
    "timeout_secs",
    "ca_file",
];

/// How long a pipeline waits between two looks at a file's size: 1C writes a big export over
/// minutes, and one whose size still changes is left for the next run. A few seconds is far
/// longer than any pause between two writes of an exporting program.
const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(&file, "(file)", format!("cannot read the file: {e}")))?;
    parse_text(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Checks a pipeline file's text; `file` names it in the errors.
pub fn parse_text(file: &str, text: &str, base: &Path) -> Result<Pipeline, ConfigErrors> {
    let table = toml_table(file, text)?;
    parse(&table, base).map_err(|errors| ConfigErrors {
        file: file.to_owned(),
        errors,
    })
}

/// Checks a parsed pipeline table; `base` is the folder relative local paths start from.
pub fn parse(table: &Table, base: &Path) -> Result<Pipeline, Vec<ConfigError>> {
    parse_with(table, base, None)
}

/// [`parse`] for a pipeline made in the console, whose FTP password was typed there (and
/// kept sealed) instead of named by `ftp.password_env`.
pub fn parse_with(
    table: &Table,
    base: &Path,
    ftp_password: Option<Secret>,
) -> Result<Pipeline, Vec<ConfigError>> {
    let mut errors = Vec::new();
    unknown_keys(table, &KEYS, &mut errors);
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
    let settle = match table.get("settle_secs") {
        None => DEFAULT_SETTLE,
        Some(Value::Integer(n)) if (0..=3600).contains(n) => Duration::from_secs(*n as u64),
        Some(other) => {
            add(
                &mut errors,
                "settle_secs",
                format!("must be a whole number of seconds from 0 to 3600, not {other}"),
            );
            DEFAULT_SETTLE
        }
    };
    let mut whole = |key: &str, range: std::ops::RangeInclusive<i64>| match table.get(key) {
        None => None,
        Some(Value::Integer(n)) if range.contains(n) => Some(n.unsigned_abs()),
        Some(other) => {
            add(
                &mut errors,
                key,
                format!(
                    "must be a whole number from {} to {}, not {other}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    };
    let min_records = whole("min_records", 1..=i64::MAX);
    let max_shrink_percent = whole("max_shrink_percent", 1..=100);
    let max_archive_percent = whole("max_archive_percent", 0..=100);
    let snapshot = match table.get("mode") {
        None => false,
        Some(Value::String(mode)) if mode == "upsert" => false,
        Some(Value::String(mode)) if mode == "snapshot" => true,
        Some(other) => {
            add(
                &mut errors,
                "mode",
                format!(
                    "must be \"upsert\" (the default: what a file leaves out stays) or \
                     \"snapshot\" (the files hold the whole source: what they leave out is \
                     archived), not {other}"
                ),
            );
            false
        }
    };
    if max_archive_percent.is_some() && !snapshot {
        add(
            &mut errors,
            "max_archive_percent",
            "applies to mode = \"snapshot\" only".into(),
        );
    }
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
    let layout = layout(table, base, &mut errors);
    let ftp = match table.get("ftp") {
        None => None,
        Some(Value::Table(ftp)) => ftp_settings(ftp, base, ftp_password, &mut errors),
        Some(other) => {
            add(
                &mut errors,
                "ftp",
                format!("must be a table ([ftp]), not {}", other.type_str()),
            );
            None
        }
    };
    let delete_after_read = match table.get("delete_after_read") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            add(
                &mut errors,
                "delete_after_read",
                format!("must be true or false, not {other}"),
            );
            false
        }
    };
    if delete_after_read && table.get("ftp").is_none() {
        add(
            &mut errors,
            "delete_after_read",
            "deletes files from the FTP server, but the pipeline has no [ftp] section".into(),
        );
    }
    // With an FTP server, plain paths are on it; only `file:` URLs are local.
    let addresses = if table.contains_key("ftp") {
        files
            .iter()
            .map(|f| {
                if f.starts_with("file:") {
                    resolve(f, base)
                } else {
                    f.clone()
                }
            })
            .collect()
    } else {
        files.iter().map(|f| resolve(f, base)).collect()
    };
    match (name, organization, source) {
        (Some(name), Some(organization), Some(source)) if errors.is_empty() => Ok(Pipeline {
            name,
            organization,
            source,
            files: Files {
                addresses,
                ftp: ftp.map(std::sync::Arc::new),
                delete_after_read,
                settle,
                min_records,
                max_shrink_percent,
                snapshot: snapshot
                    .then(|| max_archive_percent.unwrap_or(DEFAULT_MAX_ARCHIVE_PERCENT)),
            },
            chunk_size,
            schedule,
            timezone,
            notify,
            layout,
        }),
        _ => Err(errors),
    }
}

/// `layout`: a layout file, relative to the pipeline file, checked now so its mistakes are
/// the pipeline's (each under `layout`).
fn layout(table: &Table, base: &Path, errors: &mut Vec<ConfigError>) -> Arc<Layout> {
    match table.get("layout") {
        None => Layout::native(),
        Some(Value::String(path)) if !path.trim().is_empty() => {
            match Layout::load(&base.join(path.trim())) {
                Ok(layout) => Arc::new(Layout {
                    name: path.trim().to_owned(),
                    ..layout
                }),
                Err(mistakes) => {
                    for e in mistakes.errors {
                        add(
                            errors,
                            "layout",
                            format!("{}: {}: {}", mistakes.file, e.key, e.message),
                        );
                    }
                    Layout::native()
                }
            }
        }
        Some(other) => {
            add(
                errors,
                "layout",
                format!("must be the path of a layout file, not {other}"),
            );
            Layout::native()
        }
    }
}

/// The `[ftp]` table. The password itself never sits in the file: `password_env` names
/// the environment variable that holds it, read when the run connects.
fn ftp_settings(
    ftp: &Table,
    base: &Path,
    password: Option<Secret>,
    errors: &mut Vec<ConfigError>,
) -> Option<FtpSettings> {
    let before = errors.len();
    for key in ftp.keys() {
        let message = if key == "password" {
            "a password never goes in a pipeline file: put it in an environment variable and name that variable in ftp.password_env".to_owned()
        } else if !FTP_KEYS.contains(&key.as_str()) {
            format!("unknown key; the keys are {}", FTP_KEYS.join(", "))
        } else {
            continue;
        };
        add(errors, &format!("ftp.{key}"), message);
    }
    let host = match ftp.get("host") {
        Some(Value::String(h)) if !h.trim().is_empty() => h.trim().to_owned(),
        _ => {
            add(
                errors,
                "ftp.host",
                "is required: the FTP server's host name".into(),
            );
            String::new()
        }
    };
    let port = match ftp.get("port") {
        None => 21,
        Some(Value::Integer(p)) if (1..=65535).contains(p) => *p as u16,
        Some(other) => {
            add(
                errors,
                "ftp.port",
                format!("must be a port number, not {other}"),
            );
            21
        }
    };
    let flag = |key: &str, default: bool, errors: &mut Vec<ConfigError>| match ftp.get(key) {
        None => default,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            add(
                errors,
                &format!("ftp.{key}"),
                format!("must be true or false, not {other}"),
            );
            default
        }
    };
    let tls = flag("tls", false, errors);
    let passive = flag("passive", true, errors);
    let timeout = match ftp.get("timeout_secs") {
        None => 30,
        Some(Value::Integer(n)) if (1..=3600).contains(n) => *n as u64,
        Some(other) => {
            add(
                errors,
                "ftp.timeout_secs",
                format!("must be whole seconds from 1 to 3600, not {other}"),
            );
            30
        }
    };
    let user = match ftp.get("user") {
        None => "anonymous".to_owned(),
        Some(Value::String(u)) if !u.trim().is_empty() => u.trim().to_owned(),
        Some(other) => {
            add(
                errors,
                "ftp.user",
                format!("must be a user name, not {other}"),
            );
            String::new()
        }
    };
    let password_env = match ftp.get("password_env") {
        None if user == "anonymous" || password.is_some() => None,
        None => {
            add(
                errors,
                "ftp.password_env",
                format!(
                    "is required for user {user:?}: the name of the environment variable that holds the password"
                ),
            );
            None
        }
        Some(Value::String(var)) if !var.trim().is_empty() => Some(var.trim().to_owned()),
        Some(other) => {
            add(
                errors,
                "ftp.password_env",
                format!("must be the name of an environment variable, not {other}"),
            );
            None
        }
    };
    let ca_file = match ftp.get("ca_file") {
        None => None,
        Some(Value::String(path)) => {
            let path = base.join(path.trim());
            if !path.is_file() {
                add(
                    errors,
                    "ftp.ca_file",
                    format!("{} is not a file", path.display()),
                );
            }
            Some(path)
        }
        Some(other) => {
            add(
                errors,
                "ftp.ca_file",
                format!("must be a path to a PEM file, not {other}"),
            );
            None
        }
    };
    (errors.len() == before).then_some(FtpSettings {
        host,
        port,
        user,
        password_env,
        password,
        tls,
        passive,
        timeout: std::time::Duration::from_secs(timeout),
        ca_file,
    })
}

/// A pipeline made in the console: its TOML as stored, for its organization, with its FTP
/// password opened by `key`. Every mistake is reported as a file's would be.
pub fn parse_stored(
    stored: &StoredPipeline,
    key: Option<&SecretKey>,
) -> Result<Pipeline, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: format!("pipeline {:?} (made in the console)", stored.name),
        errors,
    };
    let password = match (&stored.ftp_password, key) {
        (None, _) => None,
        (Some(sealed), Some(key)) => Some(key.open(sealed)),
        (Some(_), None) => Some(Err(SecretError::NoKey)),
    };
    let password = match password.transpose() {
        Ok(password) => password,
        Err(e) => {
            return Err(fail(vec![ConfigError {
                key: "ftp.password".into(),
                message: e.to_string(),
            }]));
        }
    };
    parse_stored_with(stored, password)
}

/// [`parse_stored`] with the FTP password given, already opened.
pub fn parse_stored_with(
    stored: &StoredPipeline,
    password: Option<Secret>,
) -> Result<Pipeline, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: format!("pipeline {:?} (made in the console)", stored.name),
        errors,
    };
    let mut table: Table = toml::from_str(&stored.definition).map_err(|e| {
        fail(vec![ConfigError {
            key: "(syntax)".into(),
            message: e.message().to_owned(),
        }])
    })?;
    table.insert(
        "organization".into(),
        Value::String(stored.organization.clone()),
    );
    parse_with(&table, Path::new("."), password).map_err(fail)
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
            p.files.addresses,
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
    fn a_snapshot_is_a_mode_with_a_limit() {
        let base = "name = \"n\"\norganization = \"uo-1\"\nsource = \"1c\"\nfiles = \"a.xml\"\n";
        let snapshot = |extra: &str| parse(&table(&format!("{base}{extra}")), Path::new("."));
        assert_eq!(snapshot("").unwrap().files.snapshot, None);
        assert_eq!(
            snapshot("mode = \"snapshot\"").unwrap().files.snapshot,
            Some(DEFAULT_MAX_ARCHIVE_PERCENT)
        );
        assert_eq!(
            snapshot("mode = \"snapshot\"\nmax_archive_percent = 25")
                .unwrap()
                .files
                .snapshot,
            Some(25)
        );
        let errors = snapshot("mode = \"mirror\"\nmax_archive_percent = 101").unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["max_archive_percent", "mode"]);
        let errors = snapshot("max_archive_percent = 20").unwrap_err();
        assert!(
            errors[0].message.contains("mode = \"snapshot\" only"),
            "{errors:?}"
        );
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

    #[test]
    fn ftp_settings_are_checked_and_a_password_in_the_file_is_refused() {
        let base = "name = \"n\"\norganization = \"uo-1\"\nsource = \"1c\"\nfiles = \"/exports/*.xml, file:local.xml\"\ndelete_after_read = true\n";
        let ok = parse(
            &table(&format!("{base}[ftp]\nhost = \"ftp.uo-1.example\"\nuser = \"crm\"\npassword_env = \"UO1_FTP_PASSWORD\"\ntls = true\n")),
            Path::new("pipelines"),
        )
        .unwrap();
        let ftp = ok.files.ftp.as_deref().unwrap();
        assert_eq!((ftp.port, ftp.passive, ftp.tls), (21, true, true));
        assert_eq!(ftp.password_env.as_deref(), Some("UO1_FTP_PASSWORD"));
        assert_eq!(ftp.timeout, std::time::Duration::from_secs(30));
        assert!(ok.files.delete_after_read);
        assert_eq!(
            ok.files.addresses,
            vec!["/exports/*.xml", "pipelines/local.xml"],
            "FTP paths stay as written; file: URLs resolve against the pipeline"
        );
        let errors = parse(
            &table(&format!(
                "{base}[ftp]\nport = 70000\nuser = \"crm\"\npassword = \"hunter2\"\ntls = \"yes\"\n"
            )),
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "ftp.password",
                "ftp.host",
                "ftp.port",
                "ftp.tls",
                "ftp.password_env"
            ]
        );
        assert!(!format!("{errors:?}").contains("hunter2"));
        let without_ftp = parse(&table(base), Path::new(".")).unwrap_err();
        assert_eq!(without_ftp[0].key, "delete_after_read");
    }
}
