//! Mistakes in a settings file (a pipeline or a layout): each with its key, all of a file's
//! at once, so a person fixes them in one go.

/// One mistake in a settings file.
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

impl ConfigErrors {
    /// A file with one mistake, such as one that cannot be read.
    pub fn one(file: &str, key: &str, message: String) -> ConfigErrors {
        ConfigErrors {
            file: file.to_owned(),
            errors: vec![ConfigError {
                key: key.to_owned(),
                message,
            }],
        }
    }
}

fn render(file: &str, errors: &[ConfigError]) -> String {
    let mut s = format!("{file}: {} error(s)", errors.len());
    for e in errors {
        s.push_str(&format!("\n  {}: {}", e.key, e.message));
    }
    s
}

/// The TOML text as a table, or its syntax error with the line it is on.
pub fn toml_table(file: &str, text: &str) -> Result<toml::Table, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        ConfigErrors::one(
            file,
            "(syntax)",
            e.message().to_owned() + &span_note(text, e.span()),
        )
    })
}

pub fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

pub fn add(errors: &mut Vec<ConfigError>, key: &str, message: String) {
    errors.push(ConfigError {
        key: key.to_owned(),
        message,
    });
}

/// A mistake for each key of `table` that is not one of `keys`.
pub fn unknown_keys(table: &toml::Table, keys: &[&str], errors: &mut Vec<ConfigError>) {
    for key in table.keys() {
        if !keys.contains(&key.as_str()) {
            add(
                errors,
                key,
                format!("unknown key; the keys are {}", keys.join(", ")),
            );
        }
    }
}
