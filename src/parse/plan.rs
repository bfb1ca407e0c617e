//! A layout compiled for reading: the values each kind of record collects ("slots", one per
//! distinct path) and how its fields are made of them. The same for XML, CSV and XLSX; the
//! readers differ only in how they fill the slots.

use crate::error::Code;
use crate::layout::{Entity, Layout, List, Value};
use crate::model::{RawAccount, RawClient, RawPremise, RawPremiseLink};

use super::Record;

/// What a group of slots belongs to: one record, or one link or account inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Premise,
    Account,
    Client,
    PremiseLink,
    AccountLink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Address,
    Number,
    Kind,
    Floor,
    Entrance,
    Rooms,
    Area,
    CadastralNumber,
    Residents,
    Name,
    Phone,
    Email,
    Ref,
    Role,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "address" => Field::Address,
            "number" => Field::Number,
            "kind" => Field::Kind,
            "floor" => Field::Floor,
            "entrance" => Field::Entrance,
            "rooms" => Field::Rooms,
            "area" => Field::Area,
            "cadastral_number" => Field::CadastralNumber,
            "residents" => Field::Residents,
            "name" => Field::Name,
            "phone" => Field::Phone,
            "email" => Field::Email,
            "ref" => Field::Ref,
            "role" => Field::Role,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Slot(usize),
    Join(Vec<usize>),
    Map {
        slot: usize,
        /// Each value as the layout wrote it, lowercased, and what it becomes.
        map: Vec<(String, String, String)>,
    },
    Constant(String),
}

/// One value a scope collects: its path and the field it is reported as.
#[derive(Debug, Clone)]
pub struct Slot {
    pub path: String,
    /// The field named in messages about it (`phone`, `account.number`).
    pub label: String,
    /// Read by more than one field: handed out as a copy.
    shared: bool,
}

#[derive(Debug, Clone)]
pub struct ScopePlan {
    pub slots: Vec<Slot>,
    fields: Vec<(Field, String, Expr)>,
    /// Where the record's id comes from, for the message when it has none.
    id_path: String,
    /// CSV and XLSX: the separator of several ids in the `ref` cell.
    pub split: Option<String>,
    /// XML: the element path of the scope's element (absolute for records).
    pub record: Option<String>,
}

impl ScopePlan {
    fn new(record: Option<String>) -> Self {
        ScopePlan {
            slots: Vec::new(),
            fields: Vec::new(),
            id_path: String::new(),
            split: None,
            record,
        }
    }

    fn slot(&mut self, path: &str, label: &str) -> usize {
        if let Some(at) = self.slots.iter().position(|s| s.path == path) {
            self.slots[at].shared = true;
            return at;
        }
        self.slots.push(Slot {
            path: path.to_owned(),
            label: label.to_owned(),
            shared: false,
        });
        self.slots.len() - 1
    }

    fn add(&mut self, field: Field, label: String, value: &Value) {
        let expr = match value {
            Value::Path(p) => Expr::Slot(self.slot(p, &label)),
            Value::Join(parts) => Expr::Join(parts.iter().map(|p| self.slot(p, &label)).collect()),
            Value::Map { from, map } => Expr::Map {
                slot: self.slot(from, &label),
                map: map
                    .iter()
                    .map(|(from, to)| (from.to_lowercase(), from.clone(), to.clone()))
                    .collect(),
            },
            Value::Constant(c) => Expr::Constant(c.clone()),
            Value::List(_) => return,
        };
        if field == Field::Id {
            self.id_path = match value {
                Value::Path(p) | Value::Map { from: p, .. } => p.clone(),
                Value::Join(parts) => parts.join(" + "),
                Value::Constant(_) | Value::List(_) => String::new(),
            };
        }
        self.fields.push((field, label, expr));
    }

    fn entity(entity: &Entity, prefix: &str) -> Self {
        let mut plan = ScopePlan::new(entity.record.clone());
        for (name, value) in &entity.fields {
            if let Some(field) = Field::of(name) {
                plan.add(field, format!("{prefix}{name}"), value);
            }
        }
        plan
    }

    fn link(list: &List, under: Option<&str>, what: &str) -> Self {
        let record = match (under, &list.each) {
            (Some(client), Some(each)) => Some(format!("{client}/{each}")),
            _ => None,
        };
        let mut plan = ScopePlan::new(record);
        plan.add(Field::Ref, format!("{what}.ref"), &list.reference);
        if let Some(role) = &list.role {
            plan.add(Field::Role, format!("{what}.role"), role);
        }
        plan.split = list.split.clone();
        plan
    }

    /// The slots the record's id is made of.
    pub fn id_slots(&self) -> Vec<usize> {
        let mut slots = Vec::new();
        for (field, _, expr) in &self.fields {
            if *field == Field::Id {
                match expr {
                    Expr::Slot(s) | Expr::Map { slot: s, .. } => slots.push(*s),
                    Expr::Join(parts) => slots.extend(parts),
                    Expr::Constant(_) => {}
                }
            }
        }
        slots
    }

    /// Empty slots for one record (or link) of this scope. A reader may keep a frame for the
    /// next record once [`Frame::clear`]ed: a frame per record and link was a tenth of the
    /// parser's allocations.
    pub fn frame(&self) -> Frame {
        Frame {
            values: vec![None; self.slots.len()],
            ..Frame::default()
        }
    }

    /// Each field's value, in the layout's order.
    fn values<'a>(
        &'a self,
        frame: &'a mut Frame,
        rec: &'a mut Record,
    ) -> impl Iterator<Item = (Field, Option<String>)> + 'a {
        self.fields.iter().map(move |(field, label, expr)| {
            let value = match expr {
                Expr::Slot(s) => take(&self.slots[*s], &mut frame.values[*s]),
                Expr::Join(parts) => {
                    let joined = parts
                        .iter()
                        .filter_map(|s| frame.values[*s].as_deref())
                        .collect::<Vec<_>>()
                        .join(" ");
                    (!joined.is_empty()).then_some(joined)
                }
                Expr::Map { slot, map } => frame.values[*slot].as_deref().and_then(|found| {
                    // The value as the layout wrote it is the usual case, and needs no
                    // lowercased copy.
                    let exact = map.iter().find(|(_, written, _)| written == found);
                    let found_lower = || {
                        let key = found.to_lowercase();
                        map.iter().find(|(lower, _, _)| *lower == key)
                    };
                    match exact.or_else(found_lower) {
                        Some((_, _, target)) => Some(target.clone()),
                        None => {
                            let allowed: Vec<String> =
                                map.iter().map(|(_, k, _)| format!("{k:?}")).collect();
                            rec.fail(
                                Code::UnmappedValue,
                                format!(
                                    "{found:?} is not a value the layout maps for {label}: it maps {} (compared without regard to case); add the value to the layout's map",
                                    allowed.join(", ")
                                ),
                                label.as_str(),
                            );
                            None
                        }
                    }
                }),
                Expr::Constant(c) => Some(c.clone()),
            };
            (*field, value)
        })
    }

    fn missing_id(&self, rec: &mut Record, what: &str, field: &str) {
        let message = match self.id_path.strip_prefix('@') {
            Some(attr) if !attr.contains('/') => format!("{what} has no {attr} attribute"),
            _ => format!("{what} has no id: {} is missing or empty", self.id_path),
        };
        rec.fail(Code::MissingId, message, field);
    }
}

fn take(slot: &Slot, value: &mut Option<String>) -> Option<String> {
    if slot.shared {
        value.clone()
    } else {
        value.take()
    }
}

/// The values collected for one record, and the accounts and links read inside it.
#[derive(Debug, Default)]
pub struct Frame {
    pub values: Vec<Option<String>>,
    pub accounts: Vec<RawAccount>,
    pub premises: Vec<RawPremiseLink>,
    pub account_refs: Vec<String>,
}

impl Frame {
    /// Ready for the next record of its scope.
    pub fn clear(&mut self) {
        self.values.fill(None);
        self.accounts.clear();
        self.premises.clear();
        self.account_refs.clear();
    }
}

/// A layout ready for reading.
#[derive(Debug, Clone)]
pub struct Plan {
    pub premise: Option<ScopePlan>,
    pub account: Option<ScopePlan>,
    pub client: Option<ScopePlan>,
    pub premise_link: Option<ScopePlan>,
    pub account_link: Option<ScopePlan>,
}

impl Plan {
    pub fn new(layout: &Layout) -> Plan {
        let list = |name: &str| match layout.client.as_ref()?.field(name)? {
            Value::List(list) => Some(list),
            _ => None,
        };
        let client_record = layout.client.as_ref().and_then(|c| c.record.as_deref());
        Plan {
            premise: layout.premise.as_ref().map(|e| ScopePlan::entity(e, "")),
            account: layout
                .account
                .as_ref()
                .map(|e| ScopePlan::entity(e, "account.")),
            client: layout.client.as_ref().map(|e| ScopePlan::entity(e, "")),
            premise_link: list("premises").map(|l| ScopePlan::link(l, client_record, "premise")),
            account_link: list("accounts").map(|l| ScopePlan::link(l, client_record, "account")),
        }
    }

    pub fn scope(&self, scope: Scope) -> Option<&ScopePlan> {
        match scope {
            Scope::Premise => self.premise.as_ref(),
            Scope::Account => self.account.as_ref(),
            Scope::Client => self.client.as_ref(),
            Scope::PremiseLink => self.premise_link.as_ref(),
            Scope::AccountLink => self.account_link.as_ref(),
        }
    }

    pub fn premise(&self, frame: &mut Frame, rec: &mut Record) -> RawPremise {
        let plan = self
            .premise
            .as_ref()
            .expect("a premise is read only with its plan");
        let mut p = RawPremise::default();
        for (field, value) in plan.values(frame, rec) {
            let slot = match field {
                Field::Id => {
                    p.id = value.unwrap_or_default();
                    continue;
                }
                Field::Address => &mut p.address,
                Field::Number => &mut p.number,
                Field::Kind => &mut p.kind,
                Field::Floor => &mut p.floor,
                Field::Entrance => &mut p.entrance,
                Field::Rooms => &mut p.rooms,
                Field::Area => &mut p.area,
                Field::CadastralNumber => &mut p.cadastral_number,
                _ => continue,
            };
            *slot = value;
        }
        if p.id.is_empty() {
            plan.missing_id(rec, "the premise", "id");
        }
        p.accounts = std::mem::take(&mut frame.accounts);
        p
    }

    pub fn account(&self, frame: &mut Frame, rec: &mut Record) -> RawAccount {
        let plan = self
            .account
            .as_ref()
            .expect("an account is read only with its plan");
        let mut a = RawAccount::default();
        for (field, value) in plan.values(frame, rec) {
            match field {
                Field::Id => a.id = value.unwrap_or_default(),
                Field::Number => a.number = value,
                Field::Area => a.area = value,
                Field::Residents => a.residents = value,
                _ => {}
            }
        }
        if a.id.is_empty() {
            plan.missing_id(rec, "an account of the premise", "account.id");
        }
        a
    }

    pub fn client(&self, frame: &mut Frame, rec: &mut Record) -> RawClient {
        let plan = self
            .client
            .as_ref()
            .expect("a client is read only with its plan");
        let mut c = RawClient::default();
        for (field, value) in plan.values(frame, rec) {
            match field {
                Field::Id => c.id = value.unwrap_or_default(),
                Field::Name => c.name = value,
                Field::Phone => c.phone = value,
                Field::Email => c.email = value,
                _ => {}
            }
        }
        if c.id.is_empty() {
            plan.missing_id(rec, "the client", "id");
        }
        c.premises = std::mem::take(&mut frame.premises);
        c.accounts = std::mem::take(&mut frame.account_refs);
        c
    }

    /// A link read inside a client: `ref` and `role` of one linked premise or account,
    /// added to the client's frame. With `split`, one cell holds several ids (and roles,
    /// one each or one for all): each part is a link of its own.
    pub fn link(&self, scope: Scope, frame: &mut Frame, rec: &mut Record, client: &mut Frame) {
        let plan = self
            .scope(scope)
            .expect("a link is read only with its plan");
        let Some(sep) = &plan.split else {
            self.one_link(scope, frame, rec, client);
            return;
        };
        let parts: Vec<Vec<String>> = frame
            .values
            .iter()
            .map(|v| {
                v.as_deref()
                    .map(|v| v.split(sep.as_str()).map(|p| p.trim().to_owned()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let ids = plan
            .fields
            .iter()
            .find_map(|(field, _, expr)| match (field, expr) {
                (Field::Ref, Expr::Slot(s) | Expr::Map { slot: s, .. }) => Some(parts[*s].len()),
                _ => None,
            })
            .unwrap_or(0);
        for i in 0..ids {
            let mut one = plan.frame();
            for (slot, value) in one.values.iter_mut().enumerate() {
                *value = match parts[slot].len() {
                    n if n == ids => Some(parts[slot][i].clone()),
                    _ => frame.values[slot].clone(),
                }
                .filter(|v| !v.is_empty());
            }
            self.one_link(scope, &mut one, rec, client);
        }
    }

    fn one_link(&self, scope: Scope, frame: &mut Frame, rec: &mut Record, client: &mut Frame) {
        let plan = self
            .scope(scope)
            .expect("a link is read only with its plan");
        let what = if scope == Scope::PremiseLink {
            "premise"
        } else {
            "account"
        };
        let mut reference = None;
        let mut role = None;
        for (field, value) in plan.values(frame, rec) {
            match field {
                Field::Ref => reference = value,
                Field::Role => role = value,
                _ => {}
            }
        }
        let Some(reference) = reference else {
            // A row of a CSV or XLSX without the cell links nothing; an XML link element
            // without its reference is a mistake.
            if plan.record.is_some() {
                rec.fail(
                    Code::MissingField,
                    format!("a <{what}> link of the client has no ref attribute"),
                    format!("{what}.ref"),
                );
            }
            return;
        };
        if scope == Scope::PremiseLink {
            client.premises.push(RawPremiseLink {
                premise: reference,
                role,
            });
        } else {
            client.account_refs.push(reference);
        }
    }
}
