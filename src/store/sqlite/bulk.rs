//! SQLite's side of the set-based path ([`plan`](crate::store::plan)): batched look-ups
//! by key ranges, multi-row writes. Both run through rusqlite on the handles sqlx opened
//! ([`direct`](super::direct)), on the apply thread and one beside it.

use rustc_hash::FxHashSet as HashSet;
use sqlx::SqliteConnection;

use super::direct::{Lent, Writer, blocking};

use crate::model::{Record, RecordOutcome, Role};
use crate::store::plan::{
    AccountRow, Bulk, CardFound, CardRow, Ids, KeySet, Keys, Loaded, Plan, PremiseRow, listed,
};
use crate::store::{Refusal, Scope, StoreError};

/// Keys per `IN (…)` list and rows per multi-row statement: far below SQLite's 32,766
/// variables. Only full-size multi-row statements are kept prepared: a prepared statement of
/// 500 rows holds about a megabyte, and the last, shorter one of each table comes in a new
/// size nearly every chunk — cached, those filled the statement cache and took a
/// 10,000,000-pair import to a 192 MiB peak.
const BATCH: usize = 500;

/// A chunk's transaction, and a second connection that reads beside it.
///
/// Look-ups of one kind of key do not depend on another's, so half of them run on the second
/// connection at the same time, on a thread of their own.
/// The second connection's read transaction begins after the transaction took the write
/// lock, and it is only given while the transaction has written nothing, so it sees exactly
/// what the transaction sees; from the first write on (an earlier chunk of the same
/// transaction, or a run of records planned after the exact path) everything is read on the
/// transaction.
pub(super) struct Chunk<'c> {
    tx: &'c mut Writer,
    reader: Option<&'c mut SqliteConnection>,
    /// Rows inserted or updated.
    rows: usize,
}

impl<'c> Chunk<'c> {
    pub fn new(tx: &'c mut Writer, reader: Option<&'c mut SqliteConnection>) -> Self {
        Chunk {
            tx,
            reader,
            rows: 0,
        }
    }

    /// The transaction has written something.
    pub fn wrote(&self) -> bool {
        self.reader.is_none()
    }

    /// Rows the chunk inserted or updated.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The transaction is IMMEDIATE, so nobody else allocates ids until it ends.
impl Bulk for Chunk<'_> {
    async fn load(&mut self, scope: &Scope, keys: &Keys<'_>) -> Result<Loaded, StoreError> {
        let mut reader = match self.reader.as_deref_mut() {
            Some(reader) => Some(Lent::new(reader).await?),
            None => None,
        };
        let tx = self.tx.direct().await?;
        blocking(|| load(&tx, reader.as_mut().map(Lent::conn), scope, keys))
    }

    /// Writes everything the plan changed, in a few multi-row statements per table, bound
    /// straight from the plan's rows on this thread ([`direct`](super::direct)).
    async fn write(&mut self, scope: &Scope, plan: &Plan) -> Result<(), StoreError> {
        if plan.rows() == 0 {
            return Ok(());
        }
        self.reader = None;
        self.rows += plan.rows();
        let (premises, stored_premises): (Vec<_>, Vec<_>) =
            (plan.premises().into_iter()).partition(|(ext, _)| plan.new_premise(ext));
        let (accounts, stored_accounts): (Vec<_>, Vec<_>) =
            (plan.accounts().into_iter()).partition(|(ext, _)| plan.new_account(ext));
        let (cards, stored_cards): (Vec<_>, Vec<_>) =
            (plan.cards().into_iter()).partition(|&(id, _)| plan.new_card(id));
        let premise_links = plan.premise_links();
        let account_links = plan.account_links();
        let mut parts = (new_then_stored(&premises, &stored_premises, Part::Premises))
            .chain(new_then_stored(&accounts, &stored_accounts, Part::Accounts))
            .chain(new_then_stored(&cards, &stored_cards, Part::Cards))
            .chain(plan.external_ids().chunks(BATCH).map(Part::ExternalIds))
            .chain(plan.relinked().chunks(BATCH).flat_map(|part| {
                [
                    Part::Unlink("client_premises", part),
                    Part::Unlink("client_accounts", part),
                ]
            }))
            .chain(premise_links.chunks(BATCH).map(Part::PremiseLinks))
            .chain(account_links.chunks(BATCH).map(Part::AccountLinks));
        let direct = self.tx.direct().await?;
        blocking(|| parts.try_for_each(|part| part.run(&direct, scope)))
    }

    async fn exact(
        &mut self,
        scope: &Scope,
        record: &Record,
    ) -> Result<Result<RecordOutcome, Refusal>, StoreError> {
        self.reader = None;
        self.rows += 1;
        super::record::apply(self.tx, scope, record).await
    }
}

/// A chunk's look-ups, half of them on `reader` beside the transaction while it has one.
fn load(
    tx: &rusqlite::Connection,
    mut reader: Option<&mut rusqlite::Connection>,
    scope: &Scope,
    keys: &Keys<'_>,
) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::new(keys);
    let ((premises, cards, by_phone), (accounts, numbers, premise_refs, account_refs)) =
        match reader.as_deref_mut() {
            Some(reader) => {
                let reader = &mut *reader;
                beside(
                    || client_side(tx, scope, keys),
                    move || account_side(reader, scope, keys),
                )?
            }
            None => (
                client_side(tx, scope, keys)?,
                account_side(tx, scope, keys)?,
            ),
        };
    premises
        .into_iter()
        .for_each(|(ext, row)| loaded.premise(ext, row));
    premise_refs
        .into_iter()
        .for_each(|(ext, id)| loaded.premise_ref(ext, id));
    accounts
        .into_iter()
        .for_each(|(ext, row)| loaded.account(ext, row));
    account_refs
        .into_iter()
        .for_each(|(ext, id)| loaded.account_ref(ext, id));
    cards
        .into_iter()
        .for_each(|(ext, id, card)| loaded.card_by_ext(ext, id, card));
    by_phone
        .into_iter()
        .for_each(|(id, card)| loaded.card(id, card));
    loaded.own_numbers(scope, keys);
    for (number, source_id, source, ext) in numbers {
        loaded.number(number, source_id, source, ext);
    }
    let cards = loaded.card_ids();
    let (premise_links, account_links) = match reader {
        Some(reader) => {
            let cards = &cards;
            beside(
                || premise_links(tx, scope, cards),
                move || account_links(reader, scope, cards),
            )?
        }
        None => (
            premise_links(tx, scope, &cards)?,
            account_links(tx, scope, &cards)?,
        ),
    };
    for (card, premise, role) in premise_links {
        let role =
            Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?;
        loaded.premise_link(card, premise, role);
    }
    for (card, account) in account_links {
        loaded.account_link(card, account);
    }
    let (p, a, c): (i64, i64, i64) = tx
        .prepare_cached(
            "SELECT (SELECT coalesce(max(id), 0) FROM premises), (SELECT coalesce(max(id), 0) FROM accounts),
                    (SELECT coalesce(max(id), 0) FROM clients)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    loaded.premise_ids = Ids::From(p + 1);
    loaded.account_ids = Ids::From(a + 1);
    loaded.card_ids = Ids::From(c + 1);
    Ok(loaded)
}

/// Whether a part's rows are new to the database, or stored rows that changed.
///
/// New rows go in with `INSERT OR FAIL`: with the default `ABORT`, a multi-row statement
/// that may fail halfway copies every page it is about to change into a statement journal
/// first, to undo its own rows — about a page per client for the random phone index. A
/// chunk's failure rolls its whole transaction back anyway, so nothing is left half-done.
/// An upsert cannot go without it (its update clause always aborts), so only changed rows
/// take one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum New {
    Yes,
    No,
}

/// Statements of at most `BATCH` rows, for the new rows and then the stored ones.
fn new_then_stored<'p, T>(
    new: &'p [T],
    stored: &'p [T],
    part: fn(&'p [T], New) -> Part<'p>,
) -> impl Iterator<Item = Part<'p>> {
    (new.chunks(BATCH).map(move |rows| part(rows, New::Yes)))
        .chain(stored.chunks(BATCH).map(move |rows| part(rows, New::No)))
}

/// One multi-row statement's worth of a plan's rows.
enum Part<'p> {
    Premises(&'p [(&'p str, &'p PremiseRow)], New),
    Accounts(&'p [(&'p str, &'p AccountRow)], New),
    Cards(&'p [(i64, &'p CardRow)], New),
    ExternalIds(&'p [(String, i64)]),
    /// Deletes this source's links of relinked cards from one link table.
    Unlink(&'static str, &'p [i64]),
    PremiseLinks(&'p [(i64, i64, Role)]),
    AccountLinks(&'p [(i64, i64)]),
}

impl<'p> Part<'p> {
    /// Runs the part's statement on the writer's handle.
    fn run(self, conn: &rusqlite::Connection, scope: &Scope) -> Result<(), StoreError> {
        let (org, source) = (scope.org_id, scope.source_id);
        match self {
            Part::Premises(rows, new) => {
                let mut s = Statement::rows(
                    conn,
                    &insert(new, "premises (id, org_id, source_id, ext_id, address, number, kind, floor, entrance, rooms, area,
                                           cadastral_number) VALUES "),
                    "(?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows.len(),
                    upsert(new, " ON CONFLICT (id) DO UPDATE SET address = excluded.address, number = excluded.number, kind = excluded.kind,
                       floor = excluded.floor, entrance = excluded.entrance, rooms = excluded.rooms, area = excluded.area,
                       cadastral_number = excluded.cadastral_number"),
                )?;
                for &(ext, p) in rows {
                    s.bind(p.id)?.bind(org)?.bind(source)?.bind(ext)?;
                    s.bind(p.address.as_str())?.bind(p.number.as_str())?;
                    s.bind(p.kind.as_str())?.bind(p.floor)?.bind(p.entrance)?;
                    s.bind(p.rooms)?.bind(p.area)?;
                    s.bind(p.cadastral_number.as_deref())?;
                }
                s.run()
            }
            Part::Accounts(rows, new) => {
                let mut s = Statement::rows(
                    conn,
                    &insert(new, "accounts (id, org_id, source_id, ext_id, premise_id, number, area, residents) VALUES "),
                    "(?,?,?,?,?,?,?,?)",
                    rows.len(),
                    upsert(new, " ON CONFLICT (id) DO UPDATE SET premise_id = excluded.premise_id, area = excluded.area,
                       residents = excluded.residents"),
                )?;
                for &(ext, a) in rows {
                    s.bind(a.id)?.bind(org)?.bind(source)?.bind(ext)?;
                    s.bind(a.premise_id)?.bind(a.number.as_str())?;
                    s.bind(a.area)?.bind(a.residents)?;
                }
                s.run()
            }
            Part::Cards(rows, new) => {
                let mut s = Statement::rows(
                    conn,
                    &insert(new, "clients (id, org_id, name, phone, email) VALUES "),
                    "(?,?,?,?,?)",
                    rows.len(),
                    upsert(
                        new,
                        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email",
                    ),
                )?;
                for &(id, c) in rows {
                    s.bind(id)?.bind(org)?.bind(c.name.as_str())?;
                    s.bind(c.phone.as_deref())?.bind(c.email.as_deref())?;
                }
                s.run()
            }
            Part::ExternalIds(rows) => {
                let mut s = Statement::rows(
                    conn,
                    "INSERT OR FAIL INTO client_external_ids (source_id, ext_id, client_id) VALUES ",
                    "(?,?,?)",
                    rows.len(),
                    "",
                )?;
                for (ext, id) in rows {
                    s.bind(source)?.bind(ext.as_str())?.bind(*id)?;
                }
                s.run()
            }
            Part::Unlink(table, cards) => {
                let mut s = Statement::rows(
                    conn,
                    &format!("DELETE FROM {table} WHERE source_id = ? AND client_id IN ("),
                    "?",
                    cards.len(),
                    ")",
                )?;
                s.bind(source)?;
                for &id in cards {
                    s.bind(id)?;
                }
                s.run()
            }
            Part::PremiseLinks(rows) => {
                let mut s = Statement::rows(
                    conn,
                    "INSERT OR FAIL INTO client_premises (client_id, premise_id, source_id, role) VALUES ",
                    "(?,?,?,?)",
                    rows.len(),
                    "",
                )?;
                for &(card, premise, role) in rows {
                    s.bind(card)?.bind(premise)?.bind(source)?;
                    s.bind(role.as_str())?;
                }
                s.run()
            }
            Part::AccountLinks(rows) => {
                let mut s = Statement::rows(
                    conn,
                    "INSERT OR FAIL INTO client_accounts (client_id, account_id, source_id) VALUES ",
                    "(?,?,?)",
                    rows.len(),
                    "",
                )?;
                for &(card, account) in rows {
                    s.bind(card)?.bind(account)?.bind(source)?;
                }
                s.run()
            }
        }
    }
}

/// `INSERT … INTO table (columns) VALUES `, for new rows without a statement journal.
fn insert(new: New, table_and_columns: &str) -> String {
    match new {
        New::Yes => format!("INSERT OR FAIL INTO {table_and_columns}"),
        New::No => format!("INSERT INTO {table_and_columns}"),
    }
}

/// The upsert clause that updates a stored row; a new row needs none.
fn upsert(new: New, clause: &str) -> &str {
    match new {
        New::Yes => "",
        New::No => clause,
    }
}

/// A multi-row statement, its values bound one after the other.
///
/// Only full-size statements are kept prepared: a prepared statement of 500 rows holds about
/// a megabyte, and the last, shorter one of each table comes in a new size nearly every
/// chunk.
struct Statement<'c> {
    statement: Prepared<'c>,
    /// The next placeholder's index, from 1.
    next: usize,
}

enum Prepared<'c> {
    Kept(rusqlite::CachedStatement<'c>),
    Once(rusqlite::Statement<'c>),
}

impl<'c> Statement<'c> {
    /// `head row,row,… tail`, for `rows` times the values of `row`'s placeholders. The text
    /// is put together directly: sqlx's `QueryBuilder` wrote every placeholder and separator
    /// through `fmt::write`, 9.4 % of a fresh import's instructions (3.7 % this way).
    fn rows(
        conn: &'c rusqlite::Connection,
        head: &str,
        row: &str,
        rows: usize,
        tail: &str,
    ) -> Result<Statement<'c>, StoreError> {
        let mut sql = String::with_capacity(head.len() + rows * (row.len() + 1) + tail.len());
        sql.push_str(head);
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(row);
        }
        sql.push_str(tail);
        let statement = match rows == BATCH {
            true => Prepared::Kept(conn.prepare_cached(&sql)?),
            false => Prepared::Once(conn.prepare(&sql)?),
        };
        Ok(Statement { statement, next: 1 })
    }

    fn bind(&mut self, value: impl rusqlite::ToSql) -> Result<&mut Self, StoreError> {
        let statement = match &mut self.statement {
            Prepared::Kept(s) => &mut **s,
            Prepared::Once(s) => s,
        };
        statement.raw_bind_parameter(self.next, value)?;
        self.next += 1;
        Ok(self)
    }

    /// SQLite leaves a placeholder without a value NULL: a row one value short would shift
    /// every row after it instead of failing, so a statement runs only with every value bound.
    fn run(mut self) -> Result<(), StoreError> {
        let statement = match &mut self.statement {
            Prepared::Kept(s) => &mut **s,
            Prepared::Once(s) => s,
        };
        let placeholders = statement.parameter_count();
        if self.next - 1 != placeholders {
            return Err(StoreError::Corrupt(format!(
                "a write bound {} values to {placeholders} placeholders",
                self.next - 1
            )));
        }
        statement.raw_execute()?;
        Ok(())
    }
}

type Premises = Vec<(String, PremiseRow)>;
type Accounts = Vec<(String, AccountRow)>;
type Refs = Vec<(String, i64)>;
type Cards = Vec<(String, i64, CardFound)>;
type Owners = Vec<(String, i64, String, String)>;
type ByPhone = Vec<(i64, CardFound)>;

/// Runs `a` here and `b` on a thread of its own, for the two connections' halves of a
/// chunk's look-ups.
fn beside<A, B>(
    a: impl FnOnce() -> Result<A, StoreError>,
    b: impl FnOnce() -> Result<B, StoreError> + Send,
) -> Result<(A, B), StoreError>
where
    B: Send,
{
    std::thread::scope(|s| {
        let other = s.spawn(b);
        let here = a();
        let there = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((here?, there?))
    })
}

/// Premises the chunk writes, its clients' cards by external id, then cards by the phones
/// those cards do not have.
fn client_side(
    conn: &rusqlite::Connection,
    scope: &Scope,
    keys: &Keys<'_>,
) -> Result<(Premises, Cards, ByPhone), StoreError> {
    let premises = fetch_rows(
        conn,
        "ext_id, id, address, number, kind, floor, entrance, rooms, area, cadastral_number",
        "FROM premises WHERE source_id =",
        scope.source_id,
        "ext_id",
        KeyList::Text(&listed(&keys.premises)),
        Some(|r: &(String, PremiseRow)| Key::Text(&r.0)),
        |r| {
            let row = PremiseRow {
                id: r.int(1)?,
                address: r.text(2)?,
                number: r.text(3)?,
                kind: r.text(4)?,
                floor: r.get(5)?,
                entrance: r.get(6)?,
                rooms: r.get(7)?,
                area: r.get(8)?,
                cadastral_number: r.maybe_text(9)?,
            };
            Ok((r.text(0)?, row))
        },
    )?;
    let cards = fetch_rows(
        conn,
        "x.ext_id, c.id, c.phone, c.logged_in, c.name, c.email",
        "FROM client_external_ids x JOIN clients c ON c.id = x.client_id WHERE x.source_id =",
        scope.source_id,
        "x.ext_id",
        KeyList::Text(&listed(&keys.clients)),
        Some(|r: &(String, i64, CardFound)| Key::Text(&r.0)),
        |r| Ok((r.text(0)?, r.int(1)?, r.card(2)?)),
    )?;
    let known: HashSet<&str> = cards
        .iter()
        .filter_map(|(_, _, c)| c.phone.as_deref())
        .collect();
    let phones: Vec<&str> = keys
        .phones
        .iter()
        .copied()
        .filter(|p| !known.contains(p))
        .collect();
    let by_phone = cards_by_phone(conn, scope, &phones)?;
    Ok((premises, cards, by_phone))
}

/// Accounts the chunk writes, the owners of the numbers those accounts do not hold, and
/// the ids of the premises and accounts clients refer to.
fn account_side(
    conn: &rusqlite::Connection,
    scope: &Scope,
    keys: &Keys<'_>,
) -> Result<(Accounts, Owners, Refs, Refs), StoreError> {
    let accounts = fetch_rows(
        conn,
        "ext_id, id, premise_id, number, area, residents",
        "FROM accounts WHERE source_id =",
        scope.source_id,
        "ext_id",
        KeyList::Text(&listed(&keys.accounts)),
        Some(|r: &(String, AccountRow)| Key::Text(&r.0)),
        |r| {
            let row = AccountRow {
                id: r.int(1)?,
                premise_id: r.int(2)?,
                number: r.text(3)?,
                area: r.get(4)?,
                residents: r.get(5)?,
            };
            Ok((r.text(0)?, row))
        },
    )?;
    let held: HashSet<&str> = accounts.iter().map(|(_, a)| a.number.as_str()).collect();
    let numbers: Vec<&str> = keys
        .numbers
        .iter()
        .copied()
        .filter(|n| !held.contains(n))
        .collect();
    let owners = number_owners(conn, scope, &numbers)?;
    let premise_refs = ids_by_ext(conn, scope, "premises", &keys.premise_refs)?;
    let account_refs = ids_by_ext(conn, scope, "accounts", &keys.account_refs)?;
    Ok((accounts, owners, premise_refs, account_refs))
}

fn cards_by_phone(
    conn: &rusqlite::Connection,
    scope: &Scope,
    phones: &[&str],
) -> Result<ByPhone, StoreError> {
    fetch_rows(
        conn,
        "id, phone, logged_in, name, email",
        "FROM clients WHERE org_id =",
        scope.org_id,
        "phone",
        KeyList::Text(phones),
        // Phones come in random order: a chunk's phones span the whole index.
        None,
        |r| Ok((r.int(0)?, r.card(1)?)),
    )
}

/// Owners of account numbers: (number, source id, source code, external id).
fn number_owners(
    conn: &rusqlite::Connection,
    scope: &Scope,
    numbers: &[&str],
) -> Result<Owners, StoreError> {
    fetch_rows(
        conn,
        "a.number, a.source_id, s.code, a.ext_id",
        "FROM accounts a JOIN sources s ON s.id = a.source_id WHERE a.org_id =",
        scope.org_id,
        "a.number",
        KeyList::Text(numbers),
        Some(|r: &(String, i64, String, String)| Key::Text(&r.0)),
        |r| Ok((r.text(0)?, r.int(1)?, r.text(2)?, r.text(3)?)),
    )
}

/// This source's premise links of `cards`: (card, premise, role).
fn premise_links(
    conn: &rusqlite::Connection,
    scope: &Scope,
    cards: &[i64],
) -> Result<Vec<(i64, i64, String)>, StoreError> {
    fetch_rows(
        conn,
        "client_id, premise_id, role",
        "FROM client_premises WHERE source_id =",
        scope.source_id,
        "client_id",
        KeyList::Ids(cards),
        Some(|r: &(i64, i64, String)| Key::Id(r.0)),
        |r| Ok((r.int(0)?, r.int(1)?, r.text(2)?)),
    )
}

/// This source's account links of `cards`: (card, account).
fn account_links(
    conn: &rusqlite::Connection,
    scope: &Scope,
    cards: &[i64],
) -> Result<Vec<(i64, i64)>, StoreError> {
    fetch_rows(
        conn,
        "client_id, account_id",
        "FROM client_accounts WHERE source_id =",
        scope.source_id,
        "client_id",
        KeyList::Ids(cards),
        Some(|r: &(i64, i64)| Key::Id(r.0)),
        |r| Ok((r.int(0)?, r.int(1)?)),
    )
}

/// Ids of this source's rows of `table` by external id: the unique index answers alone.
fn ids_by_ext(
    conn: &rusqlite::Connection,
    scope: &Scope,
    table: &str,
    keys: &KeySet<'_>,
) -> Result<Vec<(String, i64)>, StoreError> {
    fetch_rows(
        conn,
        "ext_id, id",
        &format!("FROM {table} WHERE source_id ="),
        scope.source_id,
        "ext_id",
        KeyList::Text(&listed(keys)),
        Some(|r: &(String, i64)| Key::Text(&r.0)),
        |r| Ok((r.text(0)?, r.int(1)?)),
    )
}

/// Keys to look up. [`fetch_rows`] sorts them and splits them into batches of the same
/// type, whose first and last key bound the range a batch spans.
#[derive(Clone, Copy)]
enum KeyList<'a> {
    Text(&'a [&'a str]),
    Ids(&'a [i64]),
}

/// A looked-up row's key: a range read also brings rows the batch did not ask for.
#[derive(Clone, Copy)]
enum Key<'a> {
    Text(&'a str),
    Id(i64),
}

impl KeyList<'_> {
    fn len(&self) -> usize {
        match self {
            KeyList::Text(keys) => keys.len(),
            KeyList::Ids(keys) => keys.len(),
        }
    }

    /// The keys as one JSON array, for `json_each`.
    fn json(&self) -> Result<String, StoreError> {
        match self {
            KeyList::Text(keys) => serde_json::to_string(keys),
            KeyList::Ids(keys) => serde_json::to_string(keys),
        }
        .map_err(|e| StoreError::Corrupt(format!("key list: {e}")))
    }

    /// Of a sorted batch.
    fn contains(&self, key: Key) -> bool {
        match (self, key) {
            (KeyList::Text(keys), Key::Text(key)) => keys.binary_search(&key).is_ok(),
            (KeyList::Ids(keys), Key::Id(key)) => keys.binary_search(&key).is_ok(),
            _ => false,
        }
    }

    /// How the batch's `i`th key compares with `key`; `None` for a key of the other type.
    fn cmp_at(&self, i: usize, key: Key) -> Option<std::cmp::Ordering> {
        match (self, key) {
            (KeyList::Text(keys), Key::Text(key)) => Some(keys[i].cmp(key)),
            (KeyList::Ids(keys), Key::Id(key)) => Some(keys[i].cmp(&key)),
            _ => None,
        }
    }

    /// Binds a sorted batch's lowest and highest key as placeholders `at` and `at + 1`
    /// (`chunks` never makes an empty batch).
    fn bind_bounds(&self, s: &mut rusqlite::Statement, at: usize) -> rusqlite::Result<()> {
        match *self {
            KeyList::Text(keys) => {
                s.raw_bind_parameter(at, keys[0])?;
                s.raw_bind_parameter(at + 1, keys[keys.len() - 1])
            }
            KeyList::Ids(keys) => {
                s.raw_bind_parameter(at, keys[0])?;
                s.raw_bind_parameter(at + 1, keys[keys.len() - 1])
            }
        }
    }
}

/// Keeps the rows of a range read whose key the batch asked for. The rows come in the
/// index's order, so one walk along the sorted batch answers each with a comparison or two
/// (bisecting the batch for every row took a tenth of the apply thread in a re-import); a row out
/// of that order is looked up by bisection.
struct Sieve<'b> {
    batch: KeyList<'b>,
    /// Every key of the batch before this one is lower than the last row's key.
    at: usize,
}

impl Sieve<'_> {
    fn keeps(&mut self, key: Key) -> bool {
        use std::cmp::Ordering::{Equal, Less};
        if self.at > 0 && self.batch.cmp_at(self.at - 1, key) != Some(Less) {
            return self.batch.contains(key);
        }
        while self.at < self.batch.len() && self.batch.cmp_at(self.at, key) == Some(Less) {
            self.at += 1;
        }
        self.at < self.batch.len() && self.batch.cmp_at(self.at, key) == Some(Equal)
    }
}

/// Runs `SELECT columns FROM … WHERE scope = ? AND key …` once per `BATCH` keys, each row
/// read straight from SQLite's result by `decode` on this thread.
///
/// Through sqlx, each result row would have been handed from its SQLite worker thread to
/// the caller separately, so a batch's rows came as one JSON text that SQLite built and the
/// apply thread parsed again (13 % of a re-import's instructions, 50,000 pairs under
/// callgrind). Read here, a column is a pointer into SQLite's row.
///
/// With `key_of`, a batch's keys come in runs (a chunk's premises, accounts, clients and
/// cards are mostly neighbours in their index), so the batch is read as the one range of the
/// index from its lowest to its highest key, and the rows between that the batch did not
/// ask for are dropped here. The range read stops past twice the batch's keys: then the keys
/// are scattered among other rows and are looked up by the key list after all. An empty
/// range (every key of a fresh import) ends the look-up at once.
#[allow(clippy::too_many_arguments)]
fn fetch_rows<T>(
    conn: &rusqlite::Connection,
    columns: &str,
    from_where: &str,
    scope: i64,
    key: &str,
    keys: KeyList<'_>,
    key_of: Option<fn(&T) -> Key<'_>>,
    decode: fn(&Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut text = Vec::new();
    let mut ids = Vec::new();
    // SQLite compares TEXT bytewise (BINARY) and Rust's `str` too: the same order.
    let batches: Vec<KeyList> = match keys {
        KeyList::Text(keys) => {
            text.extend_from_slice(keys);
            text.sort_unstable();
            text.chunks(BATCH).map(KeyList::Text).collect()
        }
        KeyList::Ids(keys) => {
            ids.extend_from_slice(keys);
            ids.sort_unstable();
            ids.chunks(BATCH).map(KeyList::Ids).collect()
        }
    };
    let mut rows = Vec::with_capacity(keys.len());
    for batch in batches {
        if let Some(key_of) = key_of {
            let cap = 2 * batch.len();
            // Not a bare `LIMIT ?`: SQLite compiles a bare one for the value bound, and the
            // bindings are cleared after every run, which made SQLite compile the statement
            // again at every use (1.1 % and 1.4 % of a fresh import's and a re-import's
            // instructions, 50,000 pairs under callgrind).
            let mut range = conn.prepare_cached(&format!(
                "SELECT {columns} {from_where} ?1 AND {key} BETWEEN ?2 AND ?3 \
                 LIMIT CAST(?4 AS INTEGER)"
            ))?;
            range.raw_bind_parameter(1, scope)?;
            batch.bind_bounds(&mut range, 2)?;
            range.raw_bind_parameter(4, cap as i64 + 1)?;
            let mut held = Vec::with_capacity(batch.len());
            let mut read = range.raw_query();
            while let Some(row) = read.next()? {
                held.push(decode(&Columns(row))?);
            }
            if held.len() <= cap {
                let mut sieve = Sieve { batch, at: 0 };
                rows.extend(held.into_iter().filter(|row| sieve.keeps(key_of(row))));
                continue;
            }
        }
        let mut listed = conn.prepare_cached(&format!(
            "SELECT {columns} {from_where} ?1 AND {key} IN (SELECT value FROM json_each(?2))"
        ))?;
        listed.raw_bind_parameter(1, scope)?;
        listed.raw_bind_parameter(2, batch.json()?)?;
        let mut read = listed.raw_query();
        while let Some(row) = read.next()? {
            rows.push(decode(&Columns(row))?);
        }
    }
    Ok(rows)
}

/// A looked-up row's columns.
struct Columns<'r, 's>(&'r rusqlite::Row<'s>);

impl Columns<'_, '_> {
    /// A column of the type SQLite has for it: an integer, an area as the very f64 stored.
    fn get<T: rusqlite::types::FromSql>(&self, i: usize) -> Result<T, StoreError> {
        self.0
            .get(i)
            .map_err(|e| StoreError::Corrupt(format!("batched rows: {e}")))
    }

    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i)
    }

    /// Text checked as UTF-8 a vector at a time with simdutf8: `str::from_utf8` goes byte by
    /// byte through the Cyrillic. SQLite stores whatever bytes it is given as TEXT.
    fn maybe_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        use rusqlite::types::ValueRef;
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => simdutf8::basic::from_utf8(bytes)
                .map(|text| Some(text.to_owned()))
                .map_err(|_| StoreError::Corrupt("batched rows: not UTF-8".to_owned())),
            other => Err(StoreError::Corrupt(format!(
                "batched rows: column {i} is {:?}, not text",
                other.data_type()
            ))),
        }
    }

    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.maybe_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("batched rows: column {i} is NULL")))
    }

    /// A card from `phone, logged_in, name, email` starting at column `at`.
    fn card(&self, at: usize) -> Result<CardFound, StoreError> {
        Ok(CardFound {
            phone: self.maybe_text(at)?,
            logged_in: self.int(at + 1)? != 0,
            name: self.text(at + 2)?,
            email: self.maybe_text(at + 3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of part runs on the schema, new rows and then the same rows as stored
    /// ones; a statement one value short fails instead of running, since SQLite would bind
    /// the missing value as NULL and shift every row after it.
    #[test]
    fn every_part_runs_with_one_value_per_placeholder() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../../migrations/sqlite/0001_schema.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO organizations VALUES (1, 'uo-1');
             INSERT INTO sources VALUES (2, 1, '1c');
             INSERT INTO clients (id, org_id, name) VALUES (1, 1, 'А'), (2, 1, 'Б');",
        )
        .unwrap();
        let scope = Scope {
            org_id: 1,
            source_id: 2,
            org: "uo-1".into(),
            source: "1c".into(),
            run_id: None,
        };
        let premise = |id| PremiseRow {
            id,
            address: "ул. Ленина, 1".into(),
            number: id.to_string(),
            kind: "flat".into(),
            floor: Some(1),
            entrance: None,
            rooms: Some(2),
            area: Some(54.3),
            cadastral_number: None,
        };
        let account = |id| AccountRow {
            id,
            premise_id: 1,
            number: format!("10{id}"),
            area: None,
            residents: Some(3),
        };
        let (p1, p2, a1, a2) = (premise(1), premise(2), account(1), account(2));
        let premises = [("P-1", &p1), ("P-2", &p2)];
        let accounts = [("A-1", &a1), ("A-2", &a2)];
        let external = [("C-1".to_owned(), 1), ("C-2".to_owned(), 2)];
        let cards = [1, 2, 3];
        let premise_links = [(1, 1, Role::Owner), (2, 1, Role::Resident)];
        let account_links = [(1, 1), (2, 1)];
        let parts = [
            Part::Premises(&premises, New::Yes),
            Part::Premises(&premises, New::No),
            Part::Accounts(&accounts, New::Yes),
            Part::Accounts(&accounts, New::No),
            Part::ExternalIds(&external),
            Part::PremiseLinks(&premise_links),
            Part::AccountLinks(&account_links),
            Part::Unlink("client_accounts", &cards),
        ];
        for part in parts {
            part.run(&conn, &scope).unwrap();
        }
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        let tables = [
            "premises",
            "accounts",
            "client_external_ids",
            "client_premises",
        ];
        assert_eq!(tables.map(count), [2, 2, 2, 2]);
        assert_eq!(count("client_accounts"), 0);
        let stored: (String, Option<i64>, f64) = conn
            .query_row(
                "SELECT address, entrance, area FROM premises WHERE ext_id = 'P-2'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(stored, ("ул. Ленина, 1".to_owned(), None, 54.3));

        let mut short = Statement::rows(
            &conn,
            "INSERT INTO client_accounts (client_id, account_id, source_id) VALUES ",
            "(?,?,?)",
            2,
            "",
        )
        .unwrap();
        for value in [1, 2, 2, 2, 1] {
            short.bind(value).unwrap();
        }
        match short.run() {
            Err(StoreError::Corrupt(message)) => {
                assert_eq!(message, "a write bound 5 values to 6 placeholders")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(count("client_accounts"), 0);
    }

    /// A looked-up area is the very f64 that was stored, or an unchanged premise would be
    /// rewritten (or a changed one missed) on every re-import.
    #[test]
    fn areas_come_back_as_the_same_f64() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (source_id INTEGER, ext_id TEXT, area REAL)")
            .unwrap();
        let areas = [
            54.3,
            0.1,
            33.33,
            1.005,
            12.345_678_901_234_567,
            0.1 + 0.2,
            1e-7,
            99_999.99,
            123_456_789_012.34,
            1e13,
            1e300,
            f64::MIN_POSITIVE,
            5e-324,
        ];
        let stored: Vec<(String, Option<f64>)> = (areas.iter().map(|&a| Some(a)))
            .chain([None])
            .enumerate()
            .map(|(i, a)| (format!("P-{i:02}"), a))
            .collect();
        for (ext, area) in &stored {
            conn.execute("INSERT INTO t VALUES (1, ?1, ?2)", (ext, area))
                .unwrap();
        }
        let keys: Vec<&str> = stored.iter().map(|(ext, _)| ext.as_str()).collect();
        let rows = fetch_rows(
            &conn,
            "ext_id, area",
            "FROM t WHERE source_id =",
            1,
            "ext_id",
            KeyList::Text(&keys),
            Some(|r: &(String, Option<f64>)| Key::Text(&r.0)),
            |r| Ok((r.text(0)?, r.get(1)?)),
        )
        .unwrap();
        let bits = |rows: &[(String, Option<f64>)]| -> Vec<(String, Option<u64>)> {
            (rows.iter())
                .map(|(ext, a)| (ext.clone(), a.map(f64::to_bits)))
                .collect()
        };
        assert_eq!(bits(&rows), bits(&stored));
    }

    /// SQLite stores whatever bytes it is given as TEXT; a stored value that is not UTF-8
    /// must end the look-up with an error, on both the range read and the key list.
    #[test]
    fn stored_text_that_is_not_utf8_is_a_corrupt_database_error() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (source_id INTEGER, ext_id TEXT);
             INSERT INTO t VALUES (1, 'A'), (1, CAST(x'42ff' AS TEXT)), (1, 'C')",
        )
        .unwrap();
        let keys = ["A", "C"];
        let key_of: fn(&(String,)) -> Key<'_> = |r| Key::Text(&r.0);
        let look_up = |key_of| {
            fetch_rows(
                &conn,
                "ext_id",
                "FROM t WHERE source_id =",
                1,
                "ext_id",
                KeyList::Text(&keys),
                key_of,
                |r| Ok((r.text(0)?,)),
            )
        };
        // The range from A to C holds the broken value.
        match look_up(Some(key_of)) {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("not UTF-8"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // The key list reads only A and C.
        let rows = look_up(None).unwrap();
        assert_eq!(rows, [("A".to_owned(),), ("C".to_owned(),)]);
    }

    #[test]
    fn the_sieve_keeps_asked_keys_in_and_out_of_order() {
        let batch = ["b", "d", "f"];
        let rows = ["a", "b", "b", "c", "d", "g", "d", "f", "e"];
        let mut sieve = Sieve {
            batch: KeyList::Text(&batch),
            at: 0,
        };
        let kept: Vec<&str> = rows
            .into_iter()
            .filter(|row| sieve.keeps(Key::Text(row)))
            .collect();
        assert_eq!(kept, ["b", "b", "d", "d", "f"]);

        let ids = [2, 4];
        let mut sieve = Sieve {
            batch: KeyList::Ids(&ids),
            at: 0,
        };
        let kept: Vec<i64> = [1, 2, 2, 3, 4, 5]
            .into_iter()
            .filter(|&row| sieve.keeps(Key::Id(row)))
            .collect();
        assert_eq!(kept, [2, 2, 4]);
    }
}
