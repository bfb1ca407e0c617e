//! Layout files (SPEC §13): where each field of a foreign export is — an XML with its own
//! tags, a CSV, an XLSX sheet. Read and checked key by key like pipeline files, so every
//! mistake is reported at once with its key. The native format (SPEC §3) is the built-in
//! layout [`Layout::native`]: one reading path for every export.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use toml::{Table, Value as Toml};

use crate::mistakes::{ConfigError, ConfigErrors, add, toml_table, unknown_keys};
use crate::model::{ACCOUNT_FIELDS, CLIENT_FIELDS, Kind, PREMISE_FIELDS, Role};

/// A checked layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The file it was read from (as a pipeline names it), or `native`.
    pub name: String,
    /// What it reads, for people choosing one (`description`).
    pub description: Option<String>,
    pub format: Format,
    pub premise: Option<Entity>,
    /// Accounts, nested in a premise record (XML) or on its rows (CSV, XLSX).
    pub account: Option<Entity>,
    pub client: Option<Entity>,
    /// The native format: its root and version are checked, and elements and attributes it
    /// does not know are warned about instead of skipped silently.
    pub native: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Xml,
    Csv,
    Xlsx {
        /// The sheet to read; the first one when not named.
        sheet: Option<String>,
        /// The 1-based row of the column names (rows above it are titles).
        header_row: u32,
    },
}

impl Format {
    pub fn is_table(&self) -> bool {
        !matches!(self, Format::Xml)
    }
}

/// One entity's record: where it is (XML) and where each of its fields is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// XML only: the element path of one record (absolute for premises and clients,
    /// relative to the premise for accounts).
    pub record: Option<String>,
    pub fields: Vec<(&'static str, Value)>,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// XML: `@attr`, `Child`, `Child/Grand`, `Child/@attr`, `.` (the element's own text);
    /// CSV and XLSX: a column name.
    Path(String),
    /// The non-empty values joined with a space.
    Join(Vec<String>),
    /// A value translated; one outside `map` is an error naming the allowed ones. Keys are
    /// compared without regard to case.
    Map {
        from: String,
        map: Vec<(String, String)>,
    },
    /// The same value for every record.
    Constant(String),
    /// A client's links: premises (with a role) or accounts.
    List(List),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// XML: the path of each linked element, relative to the client.
    pub each: Option<String>,
    pub reference: Box<Value>,
    pub role: Option<Box<Value>>,
    /// CSV and XLSX: one cell holds several references, separated by this.
    pub split: Option<String>,
}

const KEYS: [&str; 7] = [
    "format",
    "sheet",
    "header_row",
    "description",
    "premise",
    "account",
    "client",
];

/// The native format of SPEC §3 as a layout.
const NATIVE: &str = r#"
format = "xml"

[premise]
record = "/crm-import/premises/premise"
id = "@id"
address = "address"
number = "number"
kind = "kind"
floor = "floor"
entrance = "entrance"
rooms = "rooms"
area = "area"
cadastral_number = "cadastral-number"

[account]
record = "accounts/account"
id = "@id"
number = "number"
area = "area"
residents = "residents"

[client]
record = "/crm-import/clients/client"
id = "@id"
name = "name"
phone = "phone"
email = "email"
premises = { each = "premise", ref = "@ref", role = "@role" }
accounts = { each = "account", ref = "@ref" }
"#;

static NATIVE_LAYOUT: LazyLock<Arc<Layout>> = LazyLock::new(|| {
    let mut layout = parse_text("native", NATIVE).expect("the built-in layout is valid");
    layout.native = true;
    Arc::new(layout)
});

impl Layout {
    /// The native format (SPEC §3).
    pub fn native() -> Arc<Layout> {
        NATIVE_LAYOUT.clone()
    }

    /// Reads and checks a layout file.
    pub fn load(path: &Path) -> Result<Layout, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(&file, "(file)", format!("cannot read the layout file: {e}"))
        })?;
        parse_text(&file, &text)
    }
}

/// The folder of layout files a console offers, relative to where the daemon runs (as the
/// paths of the pipelines made there are).
pub const FOLDER: &str = "layouts";

/// The valid layout files of `folder`, by file name: each path and what it reads.
pub fn offered(folder: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let layout = Layout::load(&p).ok()?;
            let path = p.to_string_lossy().into_owned();
            let description = layout.description.unwrap_or_else(|| path.clone());
            Some((path, description))
        })
        .collect();
    found.sort();
    found
}

/// Whether `path` names one of the layouts offered in [`FOLDER`].
pub fn is_offered(path: &str) -> bool {
    offered(Path::new(FOLDER)).iter().any(|(p, _)| p == path)
}

/// Checks a layout file's text; `file` names it in the errors and in positions.
pub fn parse_text(file: &str, text: &str) -> Result<Layout, ConfigErrors> {
    let table = toml_table(file, text)?;
    parse(file, &table).map_err(|errors| ConfigErrors {
        file: file.to_owned(),
        errors,
    })
}

fn parse(file: &str, table: &Table) -> Result<Layout, Vec<ConfigError>> {
    let mut errors = Vec::new();
    unknown_keys(table, &KEYS, &mut errors);
    let format = match table.get("format") {
        Some(Toml::String(f)) if f == "xml" => Some(Format::Xml),
        Some(Toml::String(f)) if f == "csv" => Some(Format::Csv),
        Some(Toml::String(f)) if f == "xlsx" => Some(Format::Xlsx {
            sheet: None,
            header_row: 1,
        }),
        None => {
            add(
                &mut errors,
                "format",
                "is required: \"xml\", \"csv\" or \"xlsx\"".into(),
            );
            None
        }
        Some(other) => {
            add(
                &mut errors,
                "format",
                format!("must be \"xml\", \"csv\" or \"xlsx\", not {other}"),
            );
            None
        }
    };
    let format = format.map(|format| sheet_settings(format, table, &mut errors));
    let xml = format == Some(Format::Xml);
    let table_format = format.as_ref().is_some_and(Format::is_table);
    let mut entity = |key: &'static str, fields: &[&'static str]| match table.get(key) {
        None => None,
        Some(Toml::Table(t)) => Some(read_entity(key, t, fields, xml, &mut errors)),
        Some(other) => {
            add(
                &mut errors,
                key,
                format!("must be a table ([{key}]), not {}", other.type_str()),
            );
            None
        }
    };
    let premise = entity("premise", &PREMISE_FIELDS);
    let account = entity("account", &ACCOUNT_FIELDS);
    let client = entity("client", &CLIENT_FIELDS);
    if premise.is_none() && client.is_none() {
        add(
            &mut errors,
            "premise",
            "a layout maps [premise] (with [account]), [client], or both".into(),
        );
    }
    if account.is_some() && premise.is_none() {
        add(
            &mut errors,
            "account",
            "accounts belong to premises: [account] needs a [premise]".into(),
        );
    }
    if table_format && premise.is_some() && client.is_some() {
        add(
            &mut errors,
            "client",
            "a CSV or XLSX file holds one entity: [premise] (with [account]) or [client]; \
             write a layout for each file"
                .into(),
        );
    }
    match format {
        Some(format) if errors.is_empty() => Ok(Layout {
            name: file.to_owned(),
            description: match table.get("description") {
                Some(Toml::String(d)) => Some(d.clone()),
                _ => None,
            },
            format,
            premise,
            account,
            client,
            native: false,
        }),
        _ => Err(errors),
    }
}

/// `sheet` and `header_row`, which only an XLSX layout has.
fn sheet_settings(format: Format, table: &Table, errors: &mut Vec<ConfigError>) -> Format {
    let Format::Xlsx { .. } = format else {
        for key in ["sheet", "header_row"] {
            if table.contains_key(key) {
                add(errors, key, "applies to format = \"xlsx\" only".into());
            }
        }
        return format;
    };
    let sheet = match table.get("sheet") {
        None => None,
        Some(Toml::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(other) => {
            add(
                errors,
                "sheet",
                format!("must be the name of a sheet, not {other}"),
            );
            None
        }
    };
    let header_row = match table.get("header_row") {
        None => 1,
        Some(Toml::Integer(n)) if (1..=1_000_000).contains(n) => *n as u32,
        Some(other) => {
            add(
                errors,
                "header_row",
                format!("must be the row number of the column names (1 or more), not {other}"),
            );
            1
        }
    };
    Format::Xlsx { sheet, header_row }
}

/// The fields a record cannot be imported without: a layout must say where they are.
fn required(entity: &str) -> &'static [&'static str] {
    match entity {
        "premise" => &["id", "address", "number"],
        "account" => &["id", "number"],
        _ => &["id", "name"],
    }
}

fn read_entity(
    entity: &'static str,
    table: &Table,
    fields: &[&'static str],
    xml: bool,
    errors: &mut Vec<ConfigError>,
) -> Entity {
    let mut out = Entity {
        record: None,
        fields: Vec::new(),
    };
    for (key, value) in table {
        let at = format!("{entity}.{key}");
        if key == "record" {
            out.record = record_path(entity, value, xml, &at, errors);
            continue;
        }
        let Some(&field) = fields.iter().find(|f| **f == key) else {
            add(
                errors,
                &at,
                format!(
                    "unknown field; the fields of a {entity} are record, {}",
                    fields.join(", ")
                ),
            );
            continue;
        };
        let list = matches!(field, "premises" | "accounts") && entity == "client";
        let read = if list {
            read_list(field, value, xml, &at, errors).map(Value::List)
        } else {
            read_value(field, value, xml, &at, errors)
        };
        if let Some(value) = read {
            out.fields.push((field, value));
        }
    }
    if xml && out.record.is_none() && !table.contains_key("record") {
        let example = if entity == "account" {
            "\"ЛицевыеСчета/ЛицевойСчет\" (inside the premise)"
        } else {
            "\"/Выгрузка/Физлица/Физлицо\""
        };
        add(
            errors,
            &format!("{entity}.record"),
            format!(
                "is required in an XML layout: the element path of one {entity}, like {example}"
            ),
        );
    }
    for field in required(entity) {
        if !table.contains_key(*field) {
            add(
                errors,
                &format!("{entity}.{field}"),
                format!("is required: every {entity} needs its {field}; say where it is"),
            );
        }
    }
    out
}

fn record_path(
    entity: &str,
    value: &Toml,
    xml: bool,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    if !xml {
        add(
            errors,
            at,
            "a CSV or XLSX record is one row (or adjacent rows of one id): remove record".into(),
        );
        return None;
    }
    let Toml::String(path) = value else {
        add(
            errors,
            at,
            format!("must be an element path, not {}", value.type_str()),
        );
        return None;
    };
    let absolute = entity != "account";
    let steps = path.strip_prefix('/');
    let problem = match (absolute, steps) {
        (true, None) => Some(format!(
            "must start at the root element with /, like \"/Выгрузка/Физлица/Физлицо\", not {path:?}"
        )),
        (false, Some(_)) => Some(format!(
            "is relative to the premise record: write it without the leading /, not {path:?}"
        )),
        _ => {
            let steps = steps.unwrap_or(path);
            (steps.is_empty() || !steps.split('/').all(is_name))
                .then(|| format!("{path:?} is not an element path: element names separated by /"))
        }
    };
    match problem {
        Some(message) => {
            add(errors, at, message);
            None
        }
        None => Some(path.clone()),
    }
}

/// An XML element or attribute name as a layout may write it.
fn is_name(step: &str) -> bool {
    !step.is_empty()
        && !step.starts_with('@')
        && !step
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '<' | '>' | '"' | '\'' | '='))
}

/// A value path: element names separated by /, the last one possibly `@attr`, or `.`.
fn check_path(path: &str, xml: bool, at: &str, errors: &mut Vec<ConfigError>) -> bool {
    let ok = if !xml {
        !path.trim().is_empty()
    } else if path == "." {
        true
    } else {
        let mut steps: Vec<&str> = path.split('/').collect();
        let last = steps.pop().unwrap_or_default();
        let last_ok = match last.strip_prefix('@') {
            Some(attr) => is_name(attr),
            None => is_name(last),
        };
        last_ok && steps.into_iter().all(is_name)
    };
    if !ok {
        let message = if xml {
            format!(
                "{path:?} is not a value path: \"@attr\", \"Child\", \"Child/Grand\", \
                 \"Child/@attr\" or \".\""
            )
        } else {
            "must be a column name".to_owned()
        };
        add(errors, at, message);
    }
    ok
}

/// What `map` may translate a field into, when the field has fixed values.
fn allowed_targets(field: &str) -> Option<Vec<&'static str>> {
    match field {
        "kind" => Some(Kind::ALL.iter().map(|k| k.as_str()).collect()),
        "role" => Some(Role::ALL.iter().map(|r| r.as_str()).collect()),
        _ => None,
    }
}

fn read_value(
    field: &str,
    value: &Toml,
    xml: bool,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Value> {
    const FORMS: &str =
        "a path, { join = [...] }, { from = \"...\", map = { ... } } or { value = \"...\" }";
    match value {
        Toml::String(path) => check_path(path, xml, at, errors).then(|| Value::Path(path.clone())),
        Toml::Table(t) => {
            let form: Vec<&str> = t.keys().map(String::as_str).collect();
            match form.as_slice() {
                ["join"] => match t.get("join") {
                    Some(Toml::Array(parts)) if !parts.is_empty() => {
                        let mut paths = Vec::new();
                        for (i, part) in parts.iter().enumerate() {
                            let at = format!("{at}.join[{i}]");
                            match part {
                                Toml::String(p) if check_path(p, xml, &at, errors) => {
                                    paths.push(p.clone())
                                }
                                Toml::String(_) => {}
                                other => add(
                                    errors,
                                    &at,
                                    format!("must be a path, not {}", other.type_str()),
                                ),
                            }
                        }
                        (paths.len() == parts.len()).then_some(Value::Join(paths))
                    }
                    _ => {
                        add(
                            errors,
                            &format!("{at}.join"),
                            "must be a list of paths, like [\"Фамилия\", \"Имя\", \"Отчество\"]"
                                .into(),
                        );
                        None
                    }
                },
                ["from", "map"] | ["map", "from"] => {
                    let from = match t.get("from") {
                        Some(Toml::String(p))
                            if check_path(p, xml, &format!("{at}.from"), errors) =>
                        {
                            Some(p.clone())
                        }
                        Some(Toml::String(_)) => None,
                        _ => {
                            add(errors, &format!("{at}.from"), "must be a path".into());
                            None
                        }
                    };
                    let map = read_map(field, t.get("map"), &format!("{at}.map"), errors);
                    Some(Value::Map {
                        from: from?,
                        map: map?,
                    })
                }
                ["value"] => match t.get("value") {
                    Some(Toml::String(v)) => Some(Value::Constant(v.clone())),
                    Some(other) => {
                        add(
                            errors,
                            &format!("{at}.value"),
                            format!("must be a string, not {}", other.type_str()),
                        );
                        None
                    }
                    None => None,
                },
                _ => {
                    add(
                        errors,
                        at,
                        format!("must be {FORMS}; found keys {}", form.join(", ")),
                    );
                    None
                }
            }
        }
        other => {
            add(
                errors,
                at,
                format!("must be {FORMS}, not {}", other.type_str()),
            );
            None
        }
    }
}

fn read_map(
    field: &str,
    map: Option<&Toml>,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<(String, String)>> {
    let Some(Toml::Table(map)) = map else {
        add(
            errors,
            at,
            "must be a table of values, like { \"Квартира\" = \"flat\" }".into(),
        );
        return None;
    };
    if map.is_empty() {
        add(errors, at, "must map at least one value".into());
        return None;
    }
    let targets = allowed_targets(field);
    let before = errors.len();
    let mut pairs = Vec::new();
    for (key, target) in map {
        match target {
            Toml::String(t)
                if targets
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(&t.as_str())) =>
            {
                pairs.push((key.trim().to_owned(), t.clone()));
            }
            Toml::String(t) => add(
                errors,
                &format!("{at}.{key}"),
                format!(
                    "{t:?} is not a {field}: the {field}s are {}",
                    targets.as_deref().unwrap_or_default().join(", ")
                ),
            ),
            other => add(
                errors,
                &format!("{at}.{key}"),
                format!("must be a string, not {}", other.type_str()),
            ),
        }
    }
    (errors.len() == before).then_some(pairs)
}

fn read_list(
    field: &str,
    value: &Toml,
    xml: bool,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<List> {
    let keys: &[&str] = match (field, xml) {
        ("premises", true) => &["each", "ref", "role"],
        ("premises", false) => &["ref", "role", "split"],
        (_, true) => &["each", "ref"],
        (_, false) => &["ref", "split"],
    };
    let example = if xml {
        "{ each = \"Помещения/Помещение\", ref = \"@Код\" }"
    } else {
        "{ ref = \"Лицевые счета\", split = \",\" }"
    };
    let Toml::Table(t) = value else {
        add(errors, at, format!("must be a table like {example}"));
        return None;
    };
    let before = errors.len();
    for key in t.keys() {
        if !keys.contains(&key.as_str()) {
            add(
                errors,
                &format!("{at}.{key}"),
                format!("unknown key; the keys of {field} are {}", keys.join(", ")),
            );
        }
    }
    let each = if xml {
        match t.get("each") {
            Some(Toml::String(p)) if !p.starts_with('/') && p.split('/').all(is_name) => {
                Some(p.clone())
            }
            _ => {
                add(
                    errors,
                    &format!("{at}.each"),
                    format!(
                        "is required: the path of each linked element inside the client, like {example}"
                    ),
                );
                None
            }
        }
    } else {
        None
    };
    let reference = match t.get("ref") {
        Some(v) => read_value("ref", v, xml, &format!("{at}.ref"), errors),
        None => {
            add(
                errors,
                &format!("{at}.ref"),
                "is required: where the linked id is".into(),
            );
            None
        }
    };
    let role = t
        .get("role")
        .and_then(|v| read_value("role", v, xml, &format!("{at}.role"), errors));
    let split = match t.get("split") {
        None => None,
        Some(Toml::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(other) => {
            add(
                errors,
                &format!("{at}.split"),
                format!("must be the separator between ids, like \",\", not {other}"),
            );
            None
        }
    };
    (errors.len() == before).then(|| List {
        each,
        reference: Box::new(reference.expect("checked above")),
        role: role.map(Box::new),
        split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_layout_is_valid() {
        let native = Layout::native();
        assert!(native.native);
        assert_eq!(native.format, Format::Xml);
        assert_eq!(
            native.client.as_ref().unwrap().record.as_deref(),
            Some("/crm-import/clients/client")
        );
    }

    #[test]
    fn every_mistake_is_listed_with_its_key() {
        let text = r#"
format = "xml"
colour = "red"
[premise]
record = "Выгрузка/Помещения"
id = "@Код"
number = 5
kind = { from = "Вид", map = { "Квартира" = "apartment" } }
[client]
record = "/Выгрузка/Физлица/Физлицо"
id = "@Код"
name = { join = [] }
premises = { ref = "@Код" }
nickname = "Прозвище"
"#;
        let errors = parse_text("bad.toml", text).unwrap_err();
        let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "colour",
            "premise.record",
            "premise.number",
            "premise.kind.map.Квартира",
            "premise.address",
            "client.name.join",
            "client.premises.each",
            "client.nickname",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn a_table_layout_holds_one_entity_and_no_record_paths() {
        let text = r#"
format = "csv"
sheet = "Лист1"
[premise]
record = "/x"
id = "Код"
address = "Адрес"
number = "Номер"
[client]
id = "Код"
name = "ФИО"
"#;
        let errors = parse_text("t.toml", text).unwrap_err();
        let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["sheet", "premise.record", "client"], "{errors}");
    }
}
