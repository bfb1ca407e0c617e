//! Pushed JSON objects into the same raw records the XML parser makes, so validation, the
//! matching table and the halt rule are the ones files get. Values may be strings or
//! numbers (`"area": 54.3` or `"54,3"`); unknown fields are warnings, as unknown elements are.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Code, Position, Problem, Warnings};
use crate::model::{
    CLIENT_FIELDS, PREMISE_FIELDS, Parsed, RawAccount, RawClient, RawPremise, RawPremiseLink,
    RawRecord,
};
use crate::parse::MAX_FIELD_CHARS;

/// Which kind of record a push carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Clients,
    Premises,
}

impl Entity {
    /// The key of the list in the JSON form (`{"source":…,"clients":[…]}`).
    pub fn key(self) -> &'static str {
        match self {
            Entity::Clients => "clients",
            Entity::Premises => "premises",
        }
    }
}

/// The record at `index` (1-based) of a push; `line` is its NDJSON line (0 in the JSON form).
pub fn parse(entity: Entity, value: &Value, file: &Arc<str>, index: u64, line: u64) -> Parsed {
    let mut position = Position {
        file: file.clone(),
        line,
        column: if line > 0 { 1 } else { 0 },
        record_index: Some(index),
        record_id: None,
        kind: match entity {
            Entity::Clients => "client",
            Entity::Premises => "premise",
        },
    };
    let Some(object) = value.as_object() else {
        return failed(
            position,
            Code::JsonSyntax,
            format!("record {index} must be a JSON object"),
            None,
        );
    };
    let id = match text(object, "id") {
        Ok(Some(id)) if id.trim().chars().count() > MAX_FIELD_CHARS => {
            let shown: String = id.trim().chars().take(64).collect();
            position.record_id = Some(format!("{shown}…"));
            return failed(
                position,
                Code::FieldTooLong,
                format!("the id of record {index} is longer than {MAX_FIELD_CHARS} characters"),
                Some("id"),
            );
        }
        Ok(Some(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        Ok(_) => {
            return failed(
                position,
                Code::MissingId,
                format!("record {index} has no id"),
                Some("id"),
            );
        }
        Err(problem) => return failed(position, Code::JsonSyntax, problem, Some("id")),
    };
    position.record_id = Some(id.clone());
    let mut warnings = Warnings::default();
    let body = match entity {
        Entity::Clients => client(object, id, &position, &mut warnings).map(RawRecord::Client),
        Entity::Premises => premise(object, id, &position, &mut warnings).map(RawRecord::Premise),
    };
    Parsed {
        position,
        body,
        warnings,
        end: None,
    }
}

/// A line of an NDJSON body that is not JSON at all.
pub fn unreadable(file: &Arc<str>, index: u64, line: u64, error: &serde_json::Error) -> Parsed {
    let position = Position {
        file: file.clone(),
        line,
        column: error.column() as u64,
        record_index: Some(index),
        ..Position::default()
    };
    failed(
        position,
        Code::JsonSyntax,
        format!("line {line} is not a JSON object: {error}"),
        None,
    )
}

fn failed(position: Position, code: Code, message: String, field: Option<&str>) -> Parsed {
    let mut problem = Problem::new(code, message, position.clone());
    problem.field = field.map(str::to_owned);
    Parsed {
        position,
        body: Err(Box::new(problem)),
        warnings: Warnings::default(),
        end: None,
    }
}

type Fields<'a> = &'a Map<String, Value>;

fn client(
    o: Fields,
    id: String,
    at: &Position,
    warnings: &mut Warnings,
) -> Result<RawClient, Box<Problem>> {
    unknown(o, &CLIENT_FIELDS, at, warnings);
    let mut premises = Vec::new();
    for (i, link) in list(o, "premises", at)?.iter().enumerate() {
        let field = format!("premises[{i}]");
        let link = link
            .as_object()
            .ok_or_else(|| wrong(at, &field, "must be an object {\"ref\": …, \"role\": …}"))?;
        let premise = match text(link, "ref").map_err(|m| wrong(at, &field, &m))? {
            Some(r) => r,
            None => return Err(wrong(at, &field, "needs \"ref\": the premise's id")),
        };
        premises.push(RawPremiseLink {
            premise,
            role: text(link, "role").map_err(|m| wrong(at, &field, &m))?,
        });
    }
    let mut accounts = Vec::new();
    for (i, account) in list(o, "accounts", at)?.iter().enumerate() {
        let field = format!("accounts[{i}]");
        let reference = match account {
            Value::String(s) => s.clone(),
            Value::Object(a) => text(a, "ref")
                .map_err(|m| wrong(at, &field, &m))?
                .ok_or_else(|| wrong(at, &field, "needs \"ref\": the account's id"))?,
            _ => return Err(wrong(at, &field, "must be an account id")),
        };
        accounts.push(reference);
    }
    Ok(RawClient {
        id,
        name: field(o, "name", at)?,
        phone: field(o, "phone", at)?,
        email: field(o, "email", at)?,
        premises,
        accounts,
    })
}

fn premise(
    o: Fields,
    id: String,
    at: &Position,
    warnings: &mut Warnings,
) -> Result<RawPremise, Box<Problem>> {
    unknown(
        o,
        &[&PREMISE_FIELDS[..], &["accounts"]].concat(),
        at,
        warnings,
    );
    let mut accounts = Vec::new();
    for (i, account) in list(o, "accounts", at)?.iter().enumerate() {
        let name = format!("accounts[{i}]");
        let a = account
            .as_object()
            .ok_or_else(|| wrong(at, &name, "must be an object"))?;
        let id = text(a, "id")
            .map_err(|m| wrong(at, &name, &m))?
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| wrong(at, &name, "needs \"id\""))?;
        accounts.push(RawAccount {
            id: id.trim().to_owned(),
            number: text(a, "number").map_err(|m| wrong(at, &name, &m))?,
            area: text(a, "area").map_err(|m| wrong(at, &name, &m))?,
            residents: text(a, "residents").map_err(|m| wrong(at, &name, &m))?,
        });
    }
    Ok(RawPremise {
        id,
        address: field(o, "address", at)?,
        number: field(o, "number", at)?,
        kind: field(o, "kind", at)?,
        floor: field(o, "floor", at)?,
        entrance: field(o, "entrance", at)?,
        rooms: field(o, "rooms", at)?,
        area: field(o, "area", at)?,
        cadastral_number: field(o, "cadastral_number", at)?,
        accounts,
    })
}

fn unknown(o: Fields, known: &[&str], at: &Position, warnings: &mut Warnings) {
    for key in o.keys().filter(|k| !known.contains(&k.as_str())) {
        let mut w = Problem::new(
            Code::UnknownElement,
            format!("unknown field {key:?} is ignored"),
            at.clone(),
        );
        w.key = key.clone();
        warnings.push(w);
    }
}

/// A scalar as the text validation expects; `null` or absent is `None`.
fn text(o: Fields, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "field {key:?} must be a string or a number, not {}",
            kind(other)
        )),
    }
}

fn field(o: Fields, key: &str, at: &Position) -> Result<Option<String>, Box<Problem>> {
    text(o, key).map_err(|m| wrong(at, key, &m))
}

fn list<'a>(o: Fields<'a>, key: &str, at: &Position) -> Result<&'a [Value], Box<Problem>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong(
            at,
            key,
            &format!("field {key:?} must be a list, not {}", kind(other)),
        )),
    }
}

fn wrong(at: &Position, field: &str, message: &str) -> Box<Problem> {
    let mut p = Problem::new(Code::JsonSyntax, message.to_owned(), at.clone());
    p.field = Some(field.to_owned());
    Box::new(p)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
