//! The set-based path: one round of batched look-ups for a run of records, the matching
//! table resolved in memory in record order, then multi-row writes of what changed.
//!
//! The plan stops at the first record it cannot resolve in memory: one that changes the
//! phone of an existing card (phone history, other organizations, merges) or the number of
//! an existing account. The caller applies that record on the exact record-at-a-time path
//! and plans the rest afresh, so the end state is always the one-by-one state.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::record::refuse;
use crate::error::Code;
use crate::matching::{self, Card, Decision, Facts};
use crate::model::{Client, Email, Outcome, Premise, Record, RecordOutcome, Role};
use crate::store::new_email;
use crate::store::{Refusal, Scope, StoreError};

/// Keys per `IN (…)` list and rows per multi-row statement: far below SQLite's 32,766
/// variables, and few distinct statement shapes for sqlx's statement cache.
const BATCH: usize = 500;

/// Why a plan ended before the last record.
#[derive(Debug)]
pub(super) enum Stop {
    End,
    /// The record after the planned ones needs the record-at-a-time path.
    Exact,
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
struct PremiseRow {
    id: i64,
    address: String,
    number: String,
    kind: String,
    floor: Option<i64>,
    entrance: Option<i64>,
    rooms: Option<i64>,
    area: Option<f64>,
    cadastral_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct AccountRow {
    id: i64,
    premise_id: i64,
    number: String,
    area: Option<f64>,
    residents: Option<i64>,
}

#[derive(Debug, Clone)]
struct CardState {
    phone: Option<String>,
    logged_in: bool,
    name: String,
    email: Option<String>,
    /// Links set by this source: premises (id, role) and accounts, sorted.
    premises: Vec<(i64, Role)>,
    accounts: Vec<i64>,
}

/// What changed, in first-touch order, written after planning.
#[derive(Default)]
struct Dirty {
    premises: Vec<String>,
    premises_seen: HashSet<String>,
    accounts: Vec<String>,
    accounts_seen: HashSet<String>,
    cards: Vec<i64>,
    cards_seen: HashSet<i64>,
    new_cards: HashSet<i64>,
    /// Existing cards whose links from this source must be deleted before the new ones go in.
    relinked: Vec<i64>,
    relinked_seen: HashSet<i64>,
    external_ids: Vec<(String, i64)>,
}

pub(super) struct Plan {
    pub outcomes: Vec<RecordOutcome>,
    pub stop: Stop,
    premises: HashMap<String, PremiseRow>,
    accounts: HashMap<String, AccountRow>,
    cards: HashMap<i64, CardState>,
    dirty: Dirty,
}

/// Plans `records` against the database state; nothing is written yet.
pub(super) async fn plan(
    conn: &mut SqliteConnection,
    scope: &Scope,
    records: &[&Record],
) -> Result<Plan, StoreError> {
    let mut keys = Keys::default();
    for record in records {
        keys.add(record);
    }
    let loaded = Loaded::load(conn, scope, &keys).await?;
    let mut planner = Planner::new(loaded);
    let mut outcomes = Vec::with_capacity(records.len());
    let mut stop = Stop::End;
    for (i, record) in records.iter().enumerate() {
        let step = match record {
            Record::Premise(p) => planner.premise(scope, p),
            Record::Client(c) => planner.client(scope, c),
        };
        match step {
            Step::Done(outcome) => outcomes.push(outcome),
            Step::Exact => {
                stop = Stop::Exact;
                break;
            }
            Step::Refused(mut refusal) => {
                refusal.index = i;
                stop = Stop::Refused(refusal);
                break;
            }
        }
    }
    Ok(Plan {
        outcomes,
        stop,
        premises: planner.premises,
        accounts: planner.accounts,
        cards: planner.cards,
        dirty: planner.dirty,
    })
}

/// The keys a run of records touches.
#[derive(Default)]
struct Keys {
    premises: HashSet<String>,
    accounts: HashSet<String>,
    numbers: HashSet<String>,
    clients: HashSet<String>,
    phones: HashSet<String>,
}

impl Keys {
    fn add(&mut self, record: &Record) {
        match record {
            Record::Premise(p) => {
                self.premises.insert(p.id.clone());
                for a in &p.accounts {
                    self.accounts.insert(a.id.clone());
                    self.numbers.insert(a.number.clone());
                }
            }
            Record::Client(c) => {
                self.clients.insert(c.id.clone());
                if let Some(p) = &c.phone {
                    self.phones.insert(p.clone());
                }
                for (p, _) in &c.premises {
                    self.premises.insert(p.clone());
                }
                for a in &c.accounts {
                    self.accounts.insert(a.clone());
                }
            }
        }
    }
}

/// The database state for a run's keys.
struct Loaded {
    premises: HashMap<String, PremiseRow>,
    accounts: HashMap<String, AccountRow>,
    /// Account number → (source id, source code, external id) of its account.
    numbers: HashMap<String, (i64, String, String)>,
    cards_by_ext: HashMap<String, i64>,
    phones: HashMap<String, i64>,
    cards: HashMap<i64, CardState>,
    next_premise: i64,
    next_account: i64,
    next_card: i64,
}

fn in_list(b: &mut QueryBuilder<Sqlite>, n: usize) {
    b.push(" IN (");
    for i in 0..n {
        if i > 0 {
            b.push(", ");
        }
        b.push("?");
    }
    b.push(")");
}

/// Keys to look up, sent as one JSON array.
enum KeyList<'a> {
    Text(&'a [&'a String]),
    Ids(&'a [i64]),
}

/// Runs `SELECT json_group_array(json_array(columns)) FROM … WHERE scope = ? AND key IN (…)`.
///
/// sqlx hands each result row from its SQLite worker thread to the caller separately; one
/// JSON row per batch of keys replaces hundreds of those hand-overs. REAL columns must be
/// selected as `iif(x IS NULL, NULL, quote(x))`: text that parses back to the same f64.
async fn fetch_rows<T: serde::de::DeserializeOwned>(
    conn: &mut SqliteConnection,
    columns: &str,
    from_where: &str,
    scope: i64,
    key: &str,
    keys: KeyList<'_>,
) -> Result<Vec<T>, StoreError> {
    // The keys travel as one JSON array too: one bound value instead of hundreds.
    let list = match keys {
        KeyList::Text(keys) => serde_json::to_string(keys),
        KeyList::Ids(keys) => serde_json::to_string(keys),
    }
    .map_err(|e| StoreError::Corrupt(format!("key list: {e}")))?;
    let mut b = QueryBuilder::<Sqlite>::new(format!(
        "SELECT json_group_array(json_array({columns})) {from_where} "
    ));
    b.push_bind(scope)
        .push(format!(" AND {key} IN (SELECT value FROM json_each("))
        .push_bind(list)
        .push("))");
    let q = b.build_query_scalar::<String>();
    let json = q.fetch_one(&mut *conn).await?;
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("batched rows: {e}")))
}

/// A REAL column selected with `quote()`: exact, unlike JSON's 15 digits.
fn real(text: Option<String>) -> Result<Option<f64>, StoreError> {
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Corrupt(format!("stored number {t:?}")))
    })
    .transpose()
}

type PremiseJson = (
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);
type AccountJson = (String, i64, i64, String, Option<String>, Option<i64>);
type CardJson = (String, i64, Option<String>, i64, String, Option<String>);

impl Loaded {
    async fn load(
        conn: &mut SqliteConnection,
        scope: &Scope,
        keys: &Keys,
    ) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded {
            premises: HashMap::with_capacity_and_hasher(keys.premises.len(), Default::default()),
            accounts: HashMap::with_capacity_and_hasher(keys.accounts.len(), Default::default()),
            numbers: HashMap::default(),
            cards_by_ext: HashMap::with_capacity_and_hasher(keys.clients.len(), Default::default()),
            phones: HashMap::with_capacity_and_hasher(keys.phones.len(), Default::default()),
            cards: HashMap::default(),
            next_premise: 0,
            next_account: 0,
            next_card: 0,
        };
        let premises: Vec<&String> = keys.premises.iter().collect();
        for part in premises.chunks(BATCH) {
            let rows: Vec<PremiseJson> = fetch_rows(
                conn,
                "ext_id, id, address, number, kind, floor, entrance, rooms, iif(area IS NULL, NULL, quote(area)), cadastral_number",
                "FROM premises WHERE source_id =",
                scope.source_id,
                "ext_id",
                KeyList::Text(part),
            )
            .await?;
            for (ext, id, address, number, kind, floor, entrance, rooms, area, cadastral_number) in
                rows
            {
                let area = real(area)?;
                loaded.premises.insert(
                    ext,
                    PremiseRow {
                        id,
                        address,
                        number,
                        kind,
                        floor,
                        entrance,
                        rooms,
                        area,
                        cadastral_number,
                    },
                );
            }
        }
        let accounts: Vec<&String> = keys.accounts.iter().collect();
        for part in accounts.chunks(BATCH) {
            let rows: Vec<AccountJson> = fetch_rows(
                conn,
                "ext_id, id, premise_id, number, iif(area IS NULL, NULL, quote(area)), residents",
                "FROM accounts WHERE source_id =",
                scope.source_id,
                "ext_id",
                KeyList::Text(part),
            )
            .await?;
            for (ext, id, premise_id, number, area, residents) in rows {
                let area = real(area)?;
                loaded.accounts.insert(
                    ext,
                    AccountRow {
                        id,
                        premise_id,
                        number,
                        area,
                        residents,
                    },
                );
            }
        }
        let numbers: Vec<&String> = keys.numbers.iter().collect();
        for part in numbers.chunks(BATCH) {
            let rows: Vec<(String, i64, String, String)> = fetch_rows(
                conn,
                "a.number, a.source_id, s.code, a.ext_id",
                "FROM accounts a JOIN sources s ON s.id = a.source_id WHERE a.org_id =",
                scope.org_id,
                "a.number",
                KeyList::Text(part),
            )
            .await?;
            for (number, source_id, source, ext) in rows {
                loaded.numbers.insert(number, (source_id, source, ext));
            }
        }
        let clients: Vec<&String> = keys.clients.iter().collect();
        for part in clients.chunks(BATCH) {
            let rows: Vec<CardJson> = fetch_rows(
                conn,
                "x.ext_id, c.id, c.phone, c.logged_in, c.name, c.email",
                "FROM client_external_ids x JOIN clients c ON c.id = x.client_id WHERE x.source_id =",
                scope.source_id,
                "x.ext_id",
                KeyList::Text(part),
            )
            .await?;
            for (ext, id, phone, logged_in, name, email) in rows {
                loaded.cards_by_ext.insert(ext, id);
                if let Some(p) = &phone {
                    loaded.phones.insert(p.clone(), id);
                }
                loaded.cards.entry(id).or_insert(CardState {
                    phone,
                    logged_in: logged_in != 0,
                    name,
                    email,
                    premises: Vec::new(),
                    accounts: Vec::new(),
                });
            }
        }
        // Phones of the cards found above are known; look up only the others.
        let phones: Vec<&String> = keys
            .phones
            .iter()
            .filter(|p| !loaded.phones.contains_key(*p))
            .collect();
        for part in phones.chunks(BATCH) {
            let rows: Vec<(i64, String, i64, String, Option<String>)> = fetch_rows(
                conn,
                "id, phone, logged_in, name, email",
                "FROM clients WHERE org_id =",
                scope.org_id,
                "phone",
                KeyList::Text(part),
            )
            .await?;
            for (id, phone, logged_in, name, email) in rows {
                loaded.phones.insert(phone.clone(), id);
                loaded.cards.entry(id).or_insert(CardState {
                    phone: Some(phone),
                    logged_in: logged_in != 0,
                    name,
                    email,
                    premises: Vec::new(),
                    accounts: Vec::new(),
                });
            }
        }
        let cards: Vec<i64> = loaded.cards.keys().copied().collect();
        for part in cards.chunks(BATCH) {
            let rows: Vec<(i64, i64, String)> = fetch_rows(
                conn,
                "client_id, premise_id, role",
                "FROM client_premises WHERE source_id =",
                scope.source_id,
                "client_id",
                KeyList::Ids(part),
            )
            .await?;
            for (card, premise, role) in rows {
                let role = Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?;
                if let Some(state) = loaded.cards.get_mut(&card) {
                    state.premises.push((premise, role));
                }
            }
            let rows: Vec<(i64, i64)> = fetch_rows(
                conn,
                "client_id, account_id",
                "FROM client_accounts WHERE source_id =",
                scope.source_id,
                "client_id",
                KeyList::Ids(part),
            )
            .await?;
            for (card, account) in rows {
                if let Some(state) = loaded.cards.get_mut(&card) {
                    state.accounts.push(account);
                }
            }
        }
        for state in loaded.cards.values_mut() {
            state.premises.sort_unstable();
            state.accounts.sort_unstable();
        }
        // The write transaction is IMMEDIATE: nobody else allocates ids until it ends.
        let (p, a, c): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(max(id), 0) FROM premises), (SELECT coalesce(max(id), 0) FROM accounts),
                    (SELECT coalesce(max(id), 0) FROM clients)",
        )
        .fetch_one(&mut *conn)
        .await?;
        (loaded.next_premise, loaded.next_account, loaded.next_card) = (p + 1, a + 1, c + 1);
        Ok(loaded)
    }
}

enum Step {
    Done(RecordOutcome),
    Exact,
    Refused(Refusal),
}

struct Planner {
    premises: HashMap<String, PremiseRow>,
    accounts: HashMap<String, AccountRow>,
    numbers: HashMap<String, (i64, String, String)>,
    cards_by_ext: HashMap<String, i64>,
    phones: HashMap<String, i64>,
    cards: HashMap<i64, CardState>,
    next_premise: i64,
    next_account: i64,
    next_card: i64,
    dirty: Dirty,
}

impl Planner {
    fn new(l: Loaded) -> Planner {
        Planner {
            premises: l.premises,
            accounts: l.accounts,
            numbers: l.numbers,
            cards_by_ext: l.cards_by_ext,
            phones: l.phones,
            cards: l.cards,
            next_premise: l.next_premise,
            next_account: l.next_account,
            next_card: l.next_card,
            dirty: Dirty::default(),
        }
    }

    fn premise(&mut self, scope: &Scope, p: &Premise) -> Step {
        // A renumbered account goes the exact way: numbers may be swapped through it.
        if p.accounts.iter().any(|a| {
            self.accounts
                .get(&a.id)
                .is_some_and(|row| row.number != a.number)
        }) {
            return Step::Exact;
        }
        for a in &p.accounts {
            if let Some((source_id, source, ext)) = self.numbers.get(&a.number)
                && (*source_id != scope.source_id || *ext != a.id)
            {
                return Step::Refused(refuse(
                    Code::AccountNumberTaken,
                    format!(
                        "account {}: number {} already belongs to account {ext} of source {source} in this organization",
                        a.id, a.number
                    ),
                    Some("account.number"),
                ));
            }
        }
        let wanted = |id: i64| PremiseRow {
            id,
            address: p.address.clone(),
            number: p.number.clone(),
            kind: p.kind.as_str().to_owned(),
            floor: p.floor,
            entrance: p.entrance,
            rooms: p.rooms,
            area: p.area,
            cadastral_number: p.cadastral_number.clone(),
        };
        let (premise_id, outcome) = match self.premises.get(&p.id) {
            Some(row) if *row == wanted(row.id) => (row.id, Outcome::Unchanged),
            Some(row) => {
                let id = row.id;
                self.premises.insert(p.id.clone(), wanted(id));
                (id, Outcome::Updated)
            }
            None => {
                let id = self.next_premise;
                self.next_premise += 1;
                self.premises.insert(p.id.clone(), wanted(id));
                (id, Outcome::Created)
            }
        };
        if outcome != Outcome::Unchanged {
            touch(
                &mut self.dirty.premises,
                &mut self.dirty.premises_seen,
                &p.id,
            );
        }
        let mut accounts = Vec::with_capacity(p.accounts.len());
        for a in &p.accounts {
            let outcome = match self.accounts.get_mut(&a.id) {
                Some(row) => {
                    let same = row.premise_id == premise_id
                        && row.area == a.area
                        && row.residents == a.residents;
                    if same {
                        Outcome::Unchanged
                    } else {
                        row.premise_id = premise_id;
                        row.area = a.area;
                        row.residents = a.residents;
                        Outcome::Updated
                    }
                }
                None => {
                    let id = self.next_account;
                    self.next_account += 1;
                    self.accounts.insert(
                        a.id.clone(),
                        AccountRow {
                            id,
                            premise_id,
                            number: a.number.clone(),
                            area: a.area,
                            residents: a.residents,
                        },
                    );
                    self.numbers.insert(
                        a.number.clone(),
                        (scope.source_id, scope.source.clone(), a.id.clone()),
                    );
                    Outcome::Created
                }
            };
            if outcome != Outcome::Unchanged {
                touch(
                    &mut self.dirty.accounts,
                    &mut self.dirty.accounts_seen,
                    &a.id,
                );
            }
            accounts.push(outcome);
        }
        Step::Done(RecordOutcome::Premise {
            premise: outcome,
            accounts,
        })
    }

    fn client(&mut self, scope: &Scope, c: &Client) -> Step {
        let mut premises = Vec::with_capacity(c.premises.len());
        for (ext, role) in &c.premises {
            match self.premises.get(ext) {
                Some(row) => premises.push((row.id, *role)),
                None => {
                    return Step::Refused(refuse(
                        Code::UnknownPremiseRef,
                        format!(
                            "premise {ext} of source {} is not known: import the premise before its residents",
                            scope.source
                        ),
                        Some("premise.ref"),
                    ));
                }
            }
        }
        premises.sort_unstable();
        let mut accounts = Vec::with_capacity(c.accounts.len());
        for ext in &c.accounts {
            match self.accounts.get(ext) {
                Some(row) => accounts.push(row.id),
                None => {
                    return Step::Refused(refuse(
                        Code::UnknownAccountRef,
                        format!(
                            "account {ext} of source {} is not known: import its premise first",
                            scope.source
                        ),
                        Some("account.ref"),
                    ));
                }
            }
        }
        accounts.sort_unstable();

        let phone = c.phone.as_deref();
        let a = self
            .cards_by_ext
            .get(&c.id)
            .map(|&id| card(id, &self.cards[&id]));
        if Facts::phone_change(a.as_ref(), phone) {
            return Step::Exact;
        }
        let b = phone
            .and_then(|p| self.phones.get(p))
            .filter(|&&id| a.as_ref().is_none_or(|a| a.id != id))
            .map(|&id| card(id, &self.cards[&id]));
        let facts = Facts {
            by_external_id: a,
            by_phone: b,
            ..Facts::default()
        };
        let outcome = match matching::decide(phone, &facts) {
            Decision::Create => {
                let id = self.next_card;
                self.next_card += 1;
                let email = match &c.email {
                    Email::Valid(e) => Some(e.clone()),
                    Email::Absent | Email::Invalid => None,
                };
                self.cards.insert(
                    id,
                    CardState {
                        phone: c.phone.clone(),
                        logged_in: false,
                        name: c.name.clone(),
                        email,
                        premises,
                        accounts,
                    },
                );
                if let Some(p) = &c.phone {
                    self.phones.insert(p.clone(), id);
                }
                self.cards_by_ext.insert(c.id.clone(), id);
                self.dirty.external_ids.push((c.id.clone(), id));
                self.dirty.new_cards.insert(id);
                self.card_touched(id, false);
                Outcome::Created
            }
            Decision::AddExternalId { card } => {
                let state = self.cards.get_mut(&card).expect("a loaded card");
                state.premises = premises;
                state.accounts = accounts;
                self.cards_by_ext.insert(c.id.clone(), card);
                self.dirty.external_ids.push((c.id.clone(), card));
                self.card_touched(card, true);
                Outcome::ExternalIdAdded
            }
            Decision::Update { card } => {
                let state = self.cards.get_mut(&card).expect("a loaded card");
                let email = new_email(&c.email, state.email.as_deref()).map(str::to_owned);
                let same_links = state.premises == premises && state.accounts == accounts;
                if state.name == c.name && state.email == email && same_links {
                    Outcome::Unchanged
                } else {
                    state.name = c.name.clone();
                    state.email = email;
                    state.premises = premises;
                    state.accounts = accounts;
                    self.card_touched(card, !same_links);
                    Outcome::Updated
                }
            }
            // Only a phone change leads to these, and phone changes went the exact way above.
            Decision::ChangePhone { .. } | Decision::Merge { .. } | Decision::Refuse { .. } => {
                return Step::Exact;
            }
        };
        Step::Done(RecordOutcome::Client(outcome))
    }

    fn card_touched(&mut self, card: i64, relinked: bool) {
        if self.dirty.cards_seen.insert(card) {
            self.dirty.cards.push(card);
        }
        if relinked
            && !self.dirty.new_cards.contains(&card)
            && self.dirty.relinked_seen.insert(card)
        {
            self.dirty.relinked.push(card);
        }
    }
}

fn card(id: i64, state: &CardState) -> Card {
    Card {
        id,
        phone: state.phone.clone(),
        logged_in: state.logged_in,
    }
}

fn touch(order: &mut Vec<String>, seen: &mut HashSet<String>, key: &str) {
    if !seen.contains(key) {
        seen.insert(key.to_owned());
        order.push(key.to_owned());
    }
}

/// Writes everything the plan changed, in a few multi-row statements per table.
pub(super) async fn write(
    conn: &mut SqliteConnection,
    scope: &Scope,
    plan: &Plan,
) -> Result<(), StoreError> {
    let d = &plan.dirty;
    for part in d.premises.chunks(BATCH) {
        let mut b = QueryBuilder::<Sqlite>::new(
            "INSERT INTO premises (id, org_id, source_id, ext_id, address, number, kind, floor, entrance, rooms, area,
                                   cadastral_number) ",
        );
        b.push_values(part, |mut row, ext| {
            let p = &plan.premises[ext];
            row.push_bind(p.id)
                .push_bind(scope.org_id)
                .push_bind(scope.source_id)
                .push_bind(ext.as_str())
                .push_bind(p.address.as_str())
                .push_bind(p.number.as_str())
                .push_bind(p.kind.as_str())
                .push_bind(p.floor)
                .push_bind(p.entrance)
                .push_bind(p.rooms)
                .push_bind(p.area)
                .push_bind(p.cadastral_number.as_deref());
        });
        b.push(
            " ON CONFLICT (id) DO UPDATE SET address = excluded.address, number = excluded.number, kind = excluded.kind,
               floor = excluded.floor, entrance = excluded.entrance, rooms = excluded.rooms, area = excluded.area,
               cadastral_number = excluded.cadastral_number",
        );
        b.build().execute(&mut *conn).await?;
    }
    for part in d.accounts.chunks(BATCH) {
        let mut b = QueryBuilder::<Sqlite>::new(
            "INSERT INTO accounts (id, org_id, source_id, ext_id, premise_id, number, area, residents) ",
        );
        b.push_values(part, |mut row, ext| {
            let a = &plan.accounts[ext];
            row.push_bind(a.id)
                .push_bind(scope.org_id)
                .push_bind(scope.source_id)
                .push_bind(ext.as_str())
                .push_bind(a.premise_id)
                .push_bind(a.number.as_str())
                .push_bind(a.area)
                .push_bind(a.residents);
        });
        b.push(
            " ON CONFLICT (id) DO UPDATE SET premise_id = excluded.premise_id, area = excluded.area,
               residents = excluded.residents",
        );
        b.build().execute(&mut *conn).await?;
    }
    for part in d.cards.chunks(BATCH) {
        let mut b =
            QueryBuilder::<Sqlite>::new("INSERT INTO clients (id, org_id, name, phone, email) ");
        b.push_values(part, |mut row, id| {
            let c = &plan.cards[id];
            row.push_bind(*id)
                .push_bind(scope.org_id)
                .push_bind(c.name.as_str())
                .push_bind(c.phone.as_deref())
                .push_bind(c.email.as_deref());
        });
        b.push(" ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email");
        b.build().execute(&mut *conn).await?;
    }
    for part in d.external_ids.chunks(BATCH) {
        let mut b = QueryBuilder::<Sqlite>::new(
            "INSERT INTO client_external_ids (source_id, ext_id, client_id) ",
        );
        b.push_values(part, |mut row, (ext, id)| {
            row.push_bind(scope.source_id)
                .push_bind(ext.as_str())
                .push_bind(*id);
        });
        b.build().execute(&mut *conn).await?;
    }
    for part in d.relinked.chunks(BATCH) {
        for table in ["client_premises", "client_accounts"] {
            let mut b =
                QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE source_id = "));
            b.push_bind(scope.source_id).push(" AND client_id");
            in_list(&mut b, part.len());
            let mut q = b.build();
            for id in part {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
    }
    // Links of every new or relinked card, as planned.
    let linked: Vec<i64> = d
        .cards
        .iter()
        .copied()
        .filter(|id| d.new_cards.contains(id) || d.relinked_seen.contains(id))
        .collect();
    let premise_links: Vec<(i64, i64, Role)> = linked
        .iter()
        .flat_map(|&id| {
            plan.cards[&id]
                .premises
                .iter()
                .map(move |&(p, role)| (id, p, role))
        })
        .collect();
    for part in premise_links.chunks(BATCH) {
        let mut b = QueryBuilder::<Sqlite>::new(
            "INSERT INTO client_premises (client_id, premise_id, source_id, role) ",
        );
        b.push_values(part, |mut row, (card, premise, role)| {
            row.push_bind(*card)
                .push_bind(*premise)
                .push_bind(scope.source_id)
                .push_bind(role.as_str());
        });
        b.build().execute(&mut *conn).await?;
    }
    let account_links: Vec<(i64, i64)> = linked
        .iter()
        .flat_map(|&id| plan.cards[&id].accounts.iter().map(move |&a| (id, a)))
        .collect();
    for part in account_links.chunks(BATCH) {
        let mut b = QueryBuilder::<Sqlite>::new(
            "INSERT INTO client_accounts (client_id, account_id, source_id) ",
        );
        b.push_values(part, |mut row, (card, account)| {
            row.push_bind(*card)
                .push_bind(*account)
                .push_bind(scope.source_id);
        });
        b.build().execute(&mut *conn).await?;
    }
    Ok(())
}
