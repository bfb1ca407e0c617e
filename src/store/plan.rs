//! The set-based path shared by both stores: one round of batched look-ups for a run of
//! records, the matching table resolved in memory in record order, then multi-row writes of
//! what changed. A store supplies the look-ups and the writes ([`Bulk`]); the decisions are
//! made here once, so both stores give the same results.
//!
//! The plan stops at the first record it cannot resolve in memory: one that changes the
//! phone of an existing card (phone history, other organizations, merges) or the number of
//! an existing account. That record goes the store's exact record-at-a-time path and the
//! rest is planned afresh, so the end state is always the one-by-one state.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::error::Code;
use crate::matching::{self, Card, Decision, Facts};
use crate::model::{Client, Email, Outcome, Premise, Record, RecordOutcome, Role};
use crate::store::{ChunkApplied, Refusal, Scope, StoreError, new_email};

/// What a store does for the set-based path, inside the chunk's transaction.
pub(super) trait Bulk {
    /// Loads the database state for `keys`, with ids reserved for what may be created.
    async fn load<'k>(&mut self, scope: &Scope, keys: &Keys<'k>) -> Result<Loaded<'k>, StoreError>;
    /// Writes everything `plan` changed.
    async fn write(&mut self, scope: &Scope, plan: &Plan<'_>) -> Result<(), StoreError>;
    /// Applies one record the planner left to the exact path; a refusal wrote nothing.
    async fn exact(
        &mut self,
        scope: &Scope,
        record: &Record,
    ) -> Result<Result<RecordOutcome, Refusal>, StoreError>;
}

/// Applies a chunk: plan, write, and the exact path for what the plan cannot resolve,
/// stopping at the first refused record.
pub(super) async fn apply_chunk(
    bulk: &mut impl Bulk,
    scope: &Scope,
    records: &[&Record],
) -> Result<ChunkApplied, StoreError> {
    let mut applied = ChunkApplied {
        outcomes: Vec::with_capacity(records.len()),
        refused: None,
    };
    let mut start = 0;
    while start < records.len() {
        let keys = Keys::of(&records[start..]);
        let loaded = bulk.load(scope, &keys).await?;
        let plan = plan(loaded, scope, &records[start..]);
        bulk.write(scope, &plan).await?;
        let planned_from = start;
        start += plan.outcomes.len();
        applied.outcomes.extend(plan.outcomes.iter().cloned());
        match plan.stop {
            Stop::End => break,
            Stop::Refused(mut refusal) => {
                refusal.index += planned_from;
                applied.refused = Some(refusal);
                break;
            }
            Stop::Exact => match bulk.exact(scope, records[start]).await? {
                Ok(outcome) => {
                    applied.outcomes.push(outcome);
                    start += 1;
                }
                Err(mut refusal) => {
                    refusal.index = start;
                    applied.refused = Some(refusal);
                    break;
                }
            },
        }
    }
    Ok(applied)
}

pub(super) fn refuse(code: Code, message: impl Into<String>, field: Option<&str>) -> Refusal {
    Refusal {
        index: 0,
        code,
        message: message.into(),
        field: field.map(str::to_owned),
    }
}

/// Why a plan ended before the last record.
#[derive(Debug)]
enum Stop {
    End,
    /// The record after the planned ones needs the record-at-a-time path.
    Exact,
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct PremiseRow {
    pub id: i64,
    pub address: String,
    pub number: String,
    pub kind: String,
    pub floor: Option<i64>,
    pub entrance: Option<i64>,
    pub rooms: Option<i64>,
    pub area: Option<f64>,
    pub cadastral_number: Option<String>,
}

impl PremiseRow {
    /// The stored row says what the record says (compared in place: most re-imported
    /// premises are unchanged, and building a row to compare would copy every field).
    pub(super) fn is(&self, p: &Premise) -> bool {
        self.address == p.address
            && self.number == p.number
            && self.kind == p.kind.as_str()
            && self.floor == p.floor
            && self.entrance == p.entrance
            && self.rooms == p.rooms
            && self.area == p.area
            && self.cadastral_number == p.cadastral_number
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct AccountRow {
    pub id: i64,
    pub premise_id: i64,
    pub number: String,
    pub area: Option<f64>,
    pub residents: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct CardRow {
    pub phone: Option<String>,
    pub logged_in: bool,
    pub name: String,
    pub email: Option<String>,
    /// Links set by this source: premises (id, role) and accounts, sorted.
    premises: Vec<(i64, Role)>,
    accounts: Vec<i64>,
}

/// What changed, in first-touch order, written after planning.
struct Dirty<'k> {
    premises: Vec<&'k str>,
    /// Premises in `premises`, and whether each is new to the database.
    premises_seen: HashMap<&'k str, bool>,
    accounts: Vec<&'k str>,
    accounts_seen: HashMap<&'k str, bool>,
    cards: Vec<i64>,
    cards_seen: HashSet<i64>,
    new_cards: HashSet<i64>,
    /// Existing cards whose links from this source must be deleted before the new ones go in.
    relinked: Vec<i64>,
    relinked_seen: HashSet<i64>,
    external_ids: Vec<(&'k str, i64)>,
}

impl<'k> Dirty<'k> {
    /// Sized for everything the run's keys could change.
    fn with_capacity(keys: &Keys<'k>) -> Dirty<'k> {
        let clients = keys.clients.len();
        Dirty {
            premises: Vec::with_capacity(keys.premises.len()),
            premises_seen: HashMap::with_capacity_and_hasher(
                keys.premises.len(),
                Default::default(),
            ),
            accounts: Vec::with_capacity(keys.accounts.len()),
            accounts_seen: HashMap::with_capacity_and_hasher(
                keys.accounts.len(),
                Default::default(),
            ),
            cards: Vec::with_capacity(clients),
            cards_seen: HashSet::with_capacity_and_hasher(clients, Default::default()),
            new_cards: HashSet::with_capacity_and_hasher(clients, Default::default()),
            relinked: Vec::new(),
            relinked_seen: HashSet::default(),
            external_ids: Vec::with_capacity(clients),
        }
    }
}

/// A planned run of records: their outcomes and the rows to write.
pub(super) struct Plan<'k> {
    pub outcomes: Vec<RecordOutcome>,
    stop: Stop,
    premises: HashMap<&'k str, PremiseRow>,
    accounts: HashMap<&'k str, AccountRow>,
    cards: HashMap<i64, CardRow>,
    dirty: Dirty<'k>,
}

impl<'k> Plan<'k> {
    /// Premises, accounts, cards and external ids to write; none when every planned record
    /// came back unchanged (a relinked card is among the cards).
    pub fn rows(&self) -> usize {
        let d = &self.dirty;
        d.premises.len() + d.accounts.len() + d.cards.len() + d.external_ids.len()
    }

    /// Premises to insert or update, by external id.
    pub fn premises(&self) -> Vec<(&'k str, &PremiseRow)> {
        let d = &self.dirty.premises;
        d.iter().map(|&ext| (ext, &self.premises[ext])).collect()
    }

    /// Accounts to insert or update, by external id.
    pub fn accounts(&self) -> Vec<(&'k str, &AccountRow)> {
        let d = &self.dirty.accounts;
        d.iter().map(|&ext| (ext, &self.accounts[ext])).collect()
    }

    /// Cards to insert, or to update (name and e-mail; phones change on the exact path).
    pub fn cards(&self) -> Vec<(i64, &CardRow)> {
        let d = &self.dirty.cards;
        d.iter().map(|id| (*id, &self.cards[id])).collect()
    }

    /// Whether a premise to write is new to the database rather than a stored one changed.
    pub fn new_premise(&self, ext: &str) -> bool {
        self.dirty.premises_seen.get(ext) == Some(&true)
    }

    /// Whether an account to write is new to the database rather than a stored one changed.
    pub fn new_account(&self, ext: &str) -> bool {
        self.dirty.accounts_seen.get(ext) == Some(&true)
    }

    /// Whether a card to write is new to the database rather than a stored one changed.
    pub fn new_card(&self, id: i64) -> bool {
        self.dirty.new_cards.contains(&id)
    }

    /// External ids to add: (external id, card).
    pub fn external_ids(&self) -> &[(&'k str, i64)] {
        &self.dirty.external_ids
    }

    /// Existing cards whose links from this source are replaced.
    pub fn relinked(&self) -> &[i64] {
        &self.dirty.relinked
    }

    /// Premise links (card, premise, role) of every new or relinked card.
    pub fn premise_links(&self) -> Vec<(i64, i64, Role)> {
        self.linked()
            .flat_map(|id| {
                let links = &self.cards[&id].premises;
                links.iter().map(move |&(p, role)| (id, p, role))
            })
            .collect()
    }

    /// Account links (card, account) of every new or relinked card.
    pub fn account_links(&self) -> Vec<(i64, i64)> {
        self.linked()
            .flat_map(|id| self.cards[&id].accounts.iter().map(move |&a| (id, a)))
            .collect()
    }

    fn linked(&self) -> impl Iterator<Item = i64> + '_ {
        let d = &self.dirty;
        d.cards
            .iter()
            .copied()
            .filter(|id| d.new_cards.contains(id) || d.relinked_seen.contains(id))
    }
}

/// A run's keys of one kind, once each, in the order the records name them: an export
/// lists its records by external id more often than not, and a sorted list costs the
/// look-ups' sort nothing.
pub(super) type KeySet<'r> = indexmap::IndexSet<&'r str, rustc_hash::FxBuildHasher>;

/// The run's own copy of a key a look-up answered with (PostgreSQL's rows bring their keys
/// as new strings); `None` for a key the run did not ask for.
pub(super) fn own_key<'k>(keys: &KeySet<'k>, key: &str) -> Option<&'k str> {
    keys.get(key).copied()
}

/// A key set as the list a look-up binds.
pub(super) fn listed<'r>(keys: &KeySet<'r>) -> Vec<&'r str> {
    keys.iter().copied().collect()
}

/// The keys a run of records touches, borrowed from the records.
pub(super) struct Keys<'r> {
    /// Premises and accounts the run writes: their whole rows are compared.
    pub premises: KeySet<'r>,
    pub accounts: KeySet<'r>,
    /// Premises and accounts that clients only refer to: only their ids are needed, which
    /// the external-id index alone answers, without reading the rows.
    pub premise_refs: KeySet<'r>,
    pub account_refs: KeySet<'r>,
    pub numbers: KeySet<'r>,
    pub clients: KeySet<'r>,
    pub phones: KeySet<'r>,
}

impl<'r> Keys<'r> {
    fn of(records: &[&'r Record]) -> Keys<'r> {
        let premises = records
            .iter()
            .filter(|r| matches!(r, Record::Premise(_)))
            .count();
        let mut keys = Keys::with_capacity(premises, records.len() - premises);
        for record in records {
            keys.add(record);
        }
        keys.premise_refs.retain(|k| !keys.premises.contains(k));
        keys.account_refs.retain(|k| !keys.accounts.contains(k));
        keys
    }

    /// Sized for a run's records, so that the sets do not grow key by key.
    fn with_capacity(premises: usize, clients: usize) -> Keys<'r> {
        let set = |n| KeySet::with_capacity_and_hasher(n, Default::default());
        Keys {
            premises: set(premises),
            accounts: set(premises),
            premise_refs: set(clients),
            account_refs: set(clients),
            numbers: set(premises),
            clients: set(clients),
            phones: set(clients),
        }
    }

    fn add(&mut self, record: &'r Record) {
        match record {
            Record::Premise(p) => {
                self.premises.insert(&p.id);
                for a in &p.accounts {
                    self.accounts.insert(&a.id);
                    self.numbers.insert(&a.number);
                }
            }
            Record::Client(c) => {
                self.clients.insert(&c.id);
                if let Some(p) = &c.phone {
                    self.phones.insert(p);
                }
                for (p, _) in &c.premises {
                    self.premise_refs.insert(p);
                }
                for a in &c.accounts {
                    self.account_refs.insert(a);
                }
            }
        }
    }
}

/// Ids for new rows: counted up from the table's maximum where the store holds the only
/// writer (SQLite), or reserved from a sequence beforehand (PostgreSQL, where other
/// organizations write at the same time).
pub(super) enum Ids {
    From(i64),
    Reserved(std::vec::IntoIter<i64>),
}

impl Ids {
    fn left(&self) -> usize {
        match self {
            Ids::From(_) => usize::MAX,
            Ids::Reserved(ids) => ids.len(),
        }
    }

    fn take(&mut self) -> i64 {
        match self {
            Ids::From(next) => {
                *next += 1;
                *next - 1
            }
            // `left()` was checked first; 0 is never handed out by either sequence.
            Ids::Reserved(ids) => ids.next().unwrap_or_default(),
        }
    }
}

/// The database state for a run's keys, as a store loads it; planning then updates it record
/// by record and notes what changed in `dirty`.
///
/// External ids and numbers are the run's own keys, borrowed from its records: a stored row is
/// filed under the key that found it, so no key is decoded from a row or copied: a re-import
/// finds every key, three to four per pair.
pub(super) struct Loaded<'k> {
    premises: HashMap<&'k str, PremiseRow>,
    accounts: HashMap<&'k str, AccountRow>,
    /// Ids of the premises and accounts that clients only refer to, by external id.
    premise_refs: HashMap<&'k str, i64>,
    account_refs: HashMap<&'k str, i64>,
    /// The account that holds each number.
    numbers: HashMap<&'k str, Holder<'k>>,
    cards_by_ext: HashMap<&'k str, i64>,
    phones: HashMap<String, i64>,
    cards: HashMap<i64, CardRow>,
    pub premise_ids: Ids,
    pub account_ids: Ids,
    pub card_ids: Ids,
    dirty: Dirty<'k>,
}

/// The account that holds a number.
enum Holder<'k> {
    /// An account of the run's source named in the run.
    Named(&'k str),
    /// Any account: (source id, source code, external id).
    Stored(i64, String, String),
}

impl Holder<'_> {
    /// (source id, source code, external id).
    fn account<'a>(&'a self, scope: &'a Scope) -> (i64, &'a str, &'a str) {
        match self {
            Holder::Named(ext) => (scope.source_id, &scope.source, ext),
            Holder::Stored(source_id, source, ext) => (*source_id, source, ext),
        }
    }
}

impl<'k> Loaded<'k> {
    pub fn new(keys: &Keys<'k>) -> Loaded<'k> {
        Loaded {
            premises: HashMap::with_capacity_and_hasher(keys.premises.len(), Default::default()),
            accounts: HashMap::with_capacity_and_hasher(keys.accounts.len(), Default::default()),
            premise_refs: HashMap::with_capacity_and_hasher(
                keys.premise_refs.len(),
                Default::default(),
            ),
            account_refs: HashMap::with_capacity_and_hasher(
                keys.account_refs.len(),
                Default::default(),
            ),
            numbers: HashMap::with_capacity_and_hasher(keys.numbers.len(), Default::default()),
            cards_by_ext: HashMap::with_capacity_and_hasher(keys.clients.len(), Default::default()),
            phones: HashMap::with_capacity_and_hasher(keys.phones.len(), Default::default()),
            cards: HashMap::with_capacity_and_hasher(keys.clients.len(), Default::default()),
            premise_ids: Ids::From(1),
            account_ids: Ids::From(1),
            card_ids: Ids::From(1),
            dirty: Dirty::with_capacity(keys),
        }
    }

    pub fn premise(&mut self, ext: &'k str, row: PremiseRow) {
        self.premises.insert(ext, row);
    }

    pub fn account(&mut self, ext: &'k str, row: AccountRow) {
        self.accounts.insert(ext, row);
    }

    pub fn premise_ref(&mut self, ext: &'k str, id: i64) {
        self.premise_refs.insert(ext, id);
    }

    pub fn account_ref(&mut self, ext: &'k str, id: i64) {
        self.account_refs.insert(ext, id);
    }

    pub fn number(&mut self, number: &'k str, source_id: i64, source: String, ext: String) {
        self.numbers
            .insert(number, Holder::Stored(source_id, source, ext));
    }

    /// Notes the loaded accounts as the holders of their numbers.
    pub fn own_numbers(&mut self, keys: &Keys<'k>) {
        for (&ext, row) in &self.accounts {
            if let Some(&number) = keys.numbers.get(row.number.as_str()) {
                self.numbers.insert(number, Holder::Named(ext));
            }
        }
    }

    /// Numbers still to look up once the accounts are loaded: a number an account of the
    /// run already has belongs to that account (numbers are unique in an organization), so
    /// a re-import looks up no number at all.
    pub fn unknown_numbers(&mut self, keys: &Keys<'k>) -> Vec<&'k str> {
        self.own_numbers(keys);
        let known = &self.numbers;
        let numbers = keys.numbers.iter().copied();
        numbers.filter(|n| !known.contains_key(*n)).collect()
    }

    /// A card found by this source's external id.
    pub fn card_by_ext(&mut self, ext: &'k str, id: i64, card: CardFound) {
        self.cards_by_ext.insert(ext, id);
        self.card(id, card);
    }

    /// A card found by phone.
    pub fn card(&mut self, id: i64, card: CardFound) {
        if let Some(p) = &card.phone {
            self.phones.insert(p.clone(), id);
        }
        self.cards.entry(id).or_insert(CardRow {
            phone: card.phone,
            logged_in: card.logged_in,
            name: card.name,
            email: card.email,
            premises: Vec::new(),
            accounts: Vec::new(),
        });
    }

    /// Phones still to look up once the cards by external id are loaded.
    pub fn unknown_phones(&self, keys: &Keys<'k>) -> Vec<&'k str> {
        let known = &self.phones;
        let phones = keys.phones.iter().copied();
        phones.filter(|p| !known.contains_key(*p)).collect()
    }

    /// Cards whose links to load.
    pub fn card_ids(&self) -> Vec<i64> {
        self.cards.keys().copied().collect()
    }

    pub fn premise_link(&mut self, card: i64, premise: i64, role: Role) {
        if let Some(state) = self.cards.get_mut(&card) {
            state.premises.push((premise, role));
        }
    }

    pub fn account_link(&mut self, card: i64, account: i64) {
        if let Some(state) = self.cards.get_mut(&card) {
            state.accounts.push(account);
        }
    }

    /// How many rows of each kind the run may create at most: (premises, accounts, cards).
    pub fn most_new(&self, keys: &Keys<'_>) -> (usize, usize, usize) {
        (
            keys.premises.len().saturating_sub(self.premises.len()),
            keys.accounts.len().saturating_sub(self.accounts.len()),
            keys.clients.len().saturating_sub(self.cards_by_ext.len()),
        )
    }
}

/// A card's columns as loaded.
pub(super) struct CardFound {
    pub phone: Option<String>,
    pub logged_in: bool,
    pub name: String,
    pub email: Option<String>,
}

/// Plans `records` against the loaded state; nothing is written yet.
fn plan<'k>(mut planner: Loaded<'k>, scope: &Scope, records: &[&'k Record]) -> Plan<'k> {
    for card in planner.cards.values_mut() {
        card.premises.sort_unstable();
        card.accounts.sort_unstable();
    }
    let mut outcomes = Vec::with_capacity(records.len());
    let mut stop = Stop::End;
    for (i, record) in records.iter().enumerate() {
        let step = match record {
            Record::Premise(p) => planner.plan_premise(scope, p),
            Record::Client(c) => planner.plan_client(scope, c),
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
    Plan {
        outcomes,
        stop,
        premises: planner.premises,
        accounts: planner.accounts,
        cards: planner.cards,
        dirty: planner.dirty,
    }
}

enum Step {
    Done(RecordOutcome),
    Exact,
    Refused(Refusal),
}

impl<'k> Loaded<'k> {
    fn plan_premise(&mut self, scope: &Scope, p: &'k Premise) -> Step {
        // A renumbered account goes the exact way: numbers may be swapped through it.
        if p.accounts.iter().any(|a| {
            self.accounts
                .get(a.id.as_str())
                .is_some_and(|row| row.number != a.number)
        }) {
            return Step::Exact;
        }
        // Short of reserved ids (never with the reservation's bound): the exact path.
        let new_accounts = p
            .accounts
            .iter()
            .filter(|a| !self.accounts.contains_key(a.id.as_str()));
        if !self.premises.contains_key(p.id.as_str()) && self.premise_ids.left() == 0
            || new_accounts.count() > self.account_ids.left()
        {
            return Step::Exact;
        }
        for a in &p.accounts {
            if let Some(holder) = self.numbers.get(a.number.as_str())
                && let (source_id, source, ext) = holder.account(scope)
                && (source_id != scope.source_id || ext != a.id)
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
        let (premise_id, outcome) = match self.premises.get(p.id.as_str()) {
            Some(row) if row.is(p) => (row.id, Outcome::Unchanged),
            Some(row) => {
                let id = row.id;
                self.premises.insert(&p.id, wanted(id));
                (id, Outcome::Updated)
            }
            None => {
                let id = self.premise_ids.take();
                self.premises.insert(&p.id, wanted(id));
                (id, Outcome::Created)
            }
        };
        if outcome != Outcome::Unchanged {
            touch(
                &mut self.dirty.premises,
                &mut self.dirty.premises_seen,
                &p.id,
                outcome == Outcome::Created,
            );
        }
        let mut accounts = Vec::with_capacity(p.accounts.len());
        for a in &p.accounts {
            let outcome = match self.accounts.get_mut(a.id.as_str()) {
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
                    let id = self.account_ids.take();
                    self.accounts.insert(
                        &a.id,
                        AccountRow {
                            id,
                            premise_id,
                            number: a.number.clone(),
                            area: a.area,
                            residents: a.residents,
                        },
                    );
                    self.numbers.insert(&a.number, Holder::Named(&a.id));
                    Outcome::Created
                }
            };
            if outcome != Outcome::Unchanged {
                touch(
                    &mut self.dirty.accounts,
                    &mut self.dirty.accounts_seen,
                    &a.id,
                    outcome == Outcome::Created,
                );
            }
            accounts.push(outcome);
        }
        Step::Done(RecordOutcome::Premise {
            premise: outcome,
            accounts,
        })
    }

    fn plan_client(&mut self, scope: &Scope, c: &'k Client) -> Step {
        let mut premises = Vec::with_capacity(c.premises.len());
        for (ext, role) in &c.premises {
            let id = self.premises.get(ext.as_str()).map(|row| row.id);
            match id.or_else(|| self.premise_refs.get(ext.as_str()).copied()) {
                Some(id) => premises.push((id, *role)),
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
            let id = self.accounts.get(ext.as_str()).map(|row| row.id);
            match id.or_else(|| self.account_refs.get(ext.as_str()).copied()) {
                Some(id) => accounts.push(id),
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
            .get(c.id.as_str())
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
            Decision::Create if self.card_ids.left() == 0 => return Step::Exact,
            Decision::Create => {
                let id = self.card_ids.take();
                let email = match &c.email {
                    Email::Valid(e) => Some(e.clone()),
                    Email::Absent | Email::Invalid => None,
                };
                self.cards.insert(
                    id,
                    CardRow {
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
                self.cards_by_ext.insert(&c.id, id);
                self.dirty.external_ids.push((&c.id, id));
                self.dirty.new_cards.insert(id);
                self.card_touched(id, false);
                Outcome::Created
            }
            Decision::AddExternalId { card } => {
                let Some(state) = self.cards.get_mut(&card) else {
                    return Step::Exact;
                };
                state.premises = premises;
                state.accounts = accounts;
                self.cards_by_ext.insert(&c.id, card);
                self.dirty.external_ids.push((&c.id, card));
                self.card_touched(card, true);
                Outcome::ExternalIdAdded
            }
            Decision::Update { card } => {
                let Some(state) = self.cards.get_mut(&card) else {
                    return Step::Exact;
                };
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
        Step::Done(RecordOutcome::Client {
            outcome,
            merged: None,
        })
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

fn card(id: i64, state: &CardRow) -> Card {
    Card {
        id,
        phone: state.phone.clone(),
        logged_in: state.logged_in,
    }
}

/// Adds a row to write once, in first-touch order; it is new to the database when its
/// first touch created it (a later touch in the same chunk only changes what is inserted).
fn touch<'k>(
    order: &mut Vec<&'k str>,
    seen: &mut HashMap<&'k str, bool>,
    key: &'k str,
    created: bool,
) {
    if !seen.contains_key(key) {
        seen.insert(key, created);
        order.push(key);
    }
}
