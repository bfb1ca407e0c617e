//! SQLite's side of the set-based path ([`plan`](crate::store::plan)): batched look-ups
//! by key ranges, multi-row writes. Both run through rusqlite on the handles sqlx opened
//! ([`direct`](super::direct)), on the apply thread, in the chunk's transaction.

use std::cmp::Ordering;

use super::direct::{Writer, blocking};
use super::phones::Phones;
use rustc_hash::FxHashSet as HashSet;

use crate::model::{Record, RecordOutcome, Role};
use crate::store::plan::{
    AccountRow, Bulk, CardFound, CardRow, Ids, KeySet, Keys, Loaded, Plan, PremiseRow, listed,
};
use crate::store::{Refusal, Scope, StoreError};

/// Keys per `IN (…)` list and rows per multi-row statement: far below SQLite's 32,766
/// variables. Only full-size multi-row statements are kept prepared: a prepared statement of
/// 500 rows held about a megabyte (250: 1.3 MiB less peak in all, at the same speed), and the last, shorter one of each table comes in a new
/// size nearly every chunk — cached, those would fill the statement cache and grow the
/// peak memory with the file.
const BATCH: usize = 250;

/// A chunk's transaction: its look-ups and its writes, one after the other on the writer.
///
/// Not half of them on a second connection beside it: on two cores such a thread only gets
/// a core once the apply thread waits for it, and a second connection reads through a cache
/// that every commit makes cold.
pub(super) struct Chunk<'c> {
    tx: &'c mut Writer,
}

impl<'c> Chunk<'c> {
    pub fn new(tx: &'c mut Writer) -> Self {
        Chunk { tx }
    }
}

/// The transaction is IMMEDIATE, so nobody else allocates ids until it ends.
impl Bulk for Chunk<'_> {
    async fn load<'k>(&mut self, scope: &Scope, keys: &Keys<'k>) -> Result<Loaded<'k>, StoreError> {
        let (tx, phones) = self.tx.with_phones().await?;
        blocking(|| load(&tx, phones, scope, keys))
    }

    /// Writes everything the plan changed, in a few multi-row statements per table, bound
    /// straight from the plan's rows on this thread ([`direct`](super::direct)).
    async fn write(&mut self, scope: &Scope, plan: &Plan<'_>) -> Result<(), StoreError> {
        if plan.rows() == 0 {
            return Ok(());
        }
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
        crate::store::exact::apply::<sqlx::Sqlite>(self.tx, scope, record).await
    }
}

/// A chunk's look-ups.
fn load<'k>(
    tx: &rusqlite::Connection,
    phones: &Phones,
    scope: &Scope,
    keys: &Keys<'k>,
) -> Result<Loaded<'k>, StoreError> {
    let mut loaded = Loaded::new(keys);
    let (premises, cards, by_phone) = client_side(tx, phones, scope, keys)?;
    let (accounts, numbers, premise_refs, account_refs) = account_side(tx, scope, keys)?;
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
    loaded.own_numbers(keys);
    for (number, source_id, source, ext) in numbers {
        loaded.number(number, source_id, source, ext);
    }
    let cards = loaded.card_ids();
    for (card, premise, role) in premise_links(tx, scope, &cards)? {
        let role =
            Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?;
        loaded.premise_link(card, premise, role);
    }
    for (card, account) in account_links(tx, scope, &cards)? {
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
    ExternalIds(&'p [(&'p str, i64)]),
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
                    s.bind(source)?.bind(*ext)?.bind(*id)?;
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
    /// is put together directly: sqlx's `QueryBuilder` writes every placeholder and separator
    /// through `fmt::write`, which was a tenth of a fresh import's work.
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

type Premises<'k> = Vec<(&'k str, PremiseRow)>;
type Accounts<'k> = Vec<(&'k str, AccountRow)>;
type Refs<'k> = Vec<(&'k str, i64)>;
type Cards<'k> = Vec<(&'k str, i64, CardFound)>;
type Owners<'k> = Vec<(&'k str, i64, String, String)>;
type ByPhone = Vec<(i64, CardFound)>;

/// Premises the chunk writes, its clients' cards by external id, then cards by the phones
/// those cards do not have.
fn client_side<'k>(
    conn: &rusqlite::Connection,
    book: &Phones,
    scope: &Scope,
    keys: &Keys<'k>,
) -> Result<(Premises<'k>, Cards<'k>, ByPhone), StoreError> {
    let premises = fetch_rows(
        conn,
        "ext_id, id, address, number, kind, floor, entrance, rooms, area, cadastral_number",
        "FROM premises WHERE source_id =",
        scope.source_id,
        listed(&keys.premises),
        Read::Range,
        |ext, r| {
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
            Ok((ext, row))
        },
    )?;
    let cards = fetch_rows(
        conn,
        "x.ext_id, c.id, c.phone, c.logged_in, c.name, c.email",
        "FROM client_external_ids x JOIN clients c ON c.id = x.client_id WHERE x.source_id =",
        scope.source_id,
        listed(&keys.clients),
        Read::Range,
        |ext, r| Ok((ext, r.int(1)?, r.card(2)?)),
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
    let by_phone = cards_by_phone(conn, book, scope, phones)?;
    Ok((premises, cards, by_phone))
}

/// Accounts the chunk writes, the owners of the numbers those accounts do not hold, and
/// the ids of the premises and accounts clients refer to.
fn account_side<'k>(
    conn: &rusqlite::Connection,
    scope: &Scope,
    keys: &Keys<'k>,
) -> Result<(Accounts<'k>, Owners<'k>, Refs<'k>, Refs<'k>), StoreError> {
    let accounts = fetch_rows(
        conn,
        "ext_id, id, premise_id, number, area, residents",
        "FROM accounts WHERE source_id =",
        scope.source_id,
        listed(&keys.accounts),
        Read::Range,
        |ext, r| {
            let row = AccountRow {
                id: r.int(1)?,
                premise_id: r.int(2)?,
                number: r.text(3)?,
                area: r.get(4)?,
                residents: r.get(5)?,
            };
            Ok((ext, row))
        },
    )?;
    let held: HashSet<&str> = accounts.iter().map(|(_, a)| a.number.as_str()).collect();
    let numbers: Vec<&str> = keys
        .numbers
        .iter()
        .copied()
        .filter(|n| !held.contains(n))
        .collect();
    let owners = number_owners(conn, scope, numbers)?;
    let premise_refs = ids_by_ext(conn, scope, "premises", &keys.premise_refs)?;
    let account_refs = ids_by_ext(conn, scope, "accounts", &keys.account_refs)?;
    Ok((accounts, owners, premise_refs, account_refs))
}

/// Cards by phone: from every phone table, or only from the recent one for a phone that
/// the organization's filter says never moved out of it.
fn cards_by_phone(
    conn: &rusqlite::Connection,
    book: &Phones,
    scope: &Scope,
    phones: Vec<&str>,
) -> Result<ByPhone, StoreError> {
    let (anywhere, recent): (Vec<&str>, Vec<&str>) = phones
        .into_iter()
        .partition(|phone| book.may_be_moved(scope.org_id, phone));
    let mut cards = Vec::new();
    for (from_where, phones) in [
        (
            "FROM client_phones p JOIN clients c ON c.id = p.client_id WHERE p.org_id =",
            anywhere,
        ),
        (
            "FROM card_phones_recent p JOIN clients c ON c.id = p.client_id WHERE p.org_id =",
            recent,
        ),
    ] {
        cards.extend(fetch_rows(
            conn,
            "p.phone, c.id, c.logged_in, c.name, c.email",
            from_where,
            scope.org_id,
            phones,
            // Phones come in random order: a chunk's phones span the whole table.
            Read::Listed,
            |phone, r| {
                let card = CardFound {
                    phone: Some(phone.to_owned()),
                    logged_in: r.int(2)? != 0,
                    name: r.text(3)?,
                    email: r.maybe_text(4)?,
                };
                Ok((r.int(1)?, card))
            },
        )?);
    }
    Ok(cards)
}

/// Holders of account numbers: (number, source id, source code, external id).
fn number_owners<'k>(
    conn: &rusqlite::Connection,
    scope: &Scope,
    numbers: Vec<&'k str>,
) -> Result<Owners<'k>, StoreError> {
    fetch_rows(
        conn,
        "a.number, a.source_id, s.code, a.ext_id",
        "FROM accounts a JOIN sources s ON s.id = a.source_id WHERE a.org_id =",
        scope.org_id,
        numbers,
        Read::Range,
        |number, r| Ok((number, r.int(1)?, r.text(2)?, r.text(3)?)),
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
        cards.to_vec(),
        Read::Range,
        |card, r| Ok((card, r.int(1)?, r.text(2)?)),
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
        cards.to_vec(),
        Read::Range,
        |card, r| Ok((card, r.int(1)?)),
    )
}

/// Ids of this source's rows of `table` by external id: the unique index answers alone.
fn ids_by_ext<'k>(
    conn: &rusqlite::Connection,
    scope: &Scope,
    table: &str,
    keys: &KeySet<'k>,
) -> Result<Refs<'k>, StoreError> {
    fetch_rows(
        conn,
        "ext_id, id",
        &format!("FROM {table} WHERE source_id ="),
        scope.source_id,
        listed(keys),
        Read::Range,
        |ext, r| Ok((ext, r.int(1)?)),
    )
}

/// A look-up's key: an external id, a number or a phone as text, or a card's id. The key
/// is the first column of every look-up, and a row comes back under the key that asked for
/// it, borrowed from the run, rather than as a copy decoded from the row.
trait Lookup: Copy + Ord + serde::Serialize + rusqlite::ToSql {
    /// A row's key column as this kind of key compares with it.
    type Column<'r>: Copy;

    fn column<'r>(row: &'r rusqlite::Row<'_>) -> Result<Self::Column<'r>, StoreError>;

    fn cmp_column(&self, column: Self::Column<'_>) -> Ordering;
}

/// Compared as bytes: SQLite compares TEXT bytewise (BINARY), as Rust compares `str`, so a
/// stored key need not be checked as UTF-8 to be found or passed over.
impl Lookup for &str {
    type Column<'r> = &'r [u8];

    fn column<'r>(row: &'r rusqlite::Row<'_>) -> Result<&'r [u8], StoreError> {
        match row.get_ref(0)? {
            rusqlite::types::ValueRef::Text(bytes) => Ok(bytes),
            other => Err(StoreError::Corrupt(format!(
                "batched rows: key is {:?}, not text",
                other.data_type()
            ))),
        }
    }

    fn cmp_column(&self, column: &[u8]) -> Ordering {
        self.as_bytes().cmp(column)
    }
}

impl Lookup for i64 {
    type Column<'r> = i64;

    fn column(row: &rusqlite::Row<'_>) -> Result<i64, StoreError> {
        Ok(row.get(0)?)
    }

    fn cmp_column(&self, column: i64) -> Ordering {
        self.cmp(&column)
    }
}

/// How a look-up reads a batch of keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// As the one range of the index from the batch's lowest key to its highest: a
    /// chunk's premises, accounts, clients and cards are mostly neighbours in their index.
    Range,
    /// Key by key from the list, for keys scattered over the whole index (phones).
    Listed,
}

/// Keeps the rows of a range read whose key the batch asked for, and answers with that key.
/// The rows come in the index's order, so one walk along the sorted batch answers each with
/// a comparison or two (bisecting the batch for every row took a tenth of the apply thread in
/// a re-import); a row out of that order is looked up by bisection.
struct Sieve<'b, K> {
    batch: &'b [K],
    /// Every key of the batch before this one is lower than the last row's key.
    at: usize,
}

impl<K: Lookup> Sieve<'_, K> {
    fn keeps(&mut self, column: K::Column<'_>) -> Option<K> {
        use std::cmp::Ordering::{Equal, Less};
        let batch = self.batch;
        if self.at > 0 && batch[self.at - 1].cmp_column(column) != Less {
            return asked(batch, column);
        }
        while self.at < batch.len() && batch[self.at].cmp_column(column) == Less {
            self.at += 1;
        }
        (self.at < batch.len() && batch[self.at].cmp_column(column) == Equal)
            .then(|| batch[self.at])
    }
}

/// The key of a sorted batch that a row's key column holds.
fn asked<K: Lookup>(batch: &[K], column: K::Column<'_>) -> Option<K> {
    let at = batch.binary_search_by(|k| k.cmp_column(column)).ok()?;
    Some(batch[at])
}

/// Runs `SELECT columns FROM … WHERE scope = ? AND key …` once per `BATCH` keys, each row
/// read straight from SQLite's result by `decode` on this thread, with the key that asked
/// for it. The first of `columns` is the key.
///
/// Through sqlx, each result row would have been handed from its SQLite worker thread to
/// the caller separately, so a batch's rows came as one JSON text that SQLite built and the
/// apply thread parsed again. Read here, a column is a pointer into SQLite's row.
///
/// A [`Read::Range`] read also brings the rows between the batch's keys that it did not
/// ask for; they are passed over undecoded. It stops past twice the batch's keys: then the
/// keys are scattered among other rows and are looked up by the key list after all. An
/// empty range (every key of a fresh import) ends the look-up at once.
fn fetch_rows<K: Lookup, T>(
    conn: &rusqlite::Connection,
    columns: &str,
    from_where: &str,
    scope: i64,
    mut keys: Vec<K>,
    read: Read,
    decode: fn(K, &Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let key = columns.split(',').next().unwrap_or(columns);
    keys.sort_unstable();
    let mut rows = Vec::with_capacity(keys.len());
    for batch in keys.chunks(BATCH) {
        if read == Read::Range {
            let cap = 2 * batch.len();
            // Not a bare `LIMIT ?`: SQLite compiles a bare one for the value bound, and the
            // bindings are cleared after every run, which made SQLite compile the statement
            // again at every use.
            let mut range = conn.prepare_cached(&format!(
                "SELECT {columns} {from_where} ?1 AND {key} BETWEEN ?2 AND ?3 \
                 LIMIT CAST(?4 AS INTEGER)"
            ))?;
            range.raw_bind_parameter(1, scope)?;
            range.raw_bind_parameter(2, batch[0])?;
            range.raw_bind_parameter(3, batch[batch.len() - 1])?;
            range.raw_bind_parameter(4, cap as i64 + 1)?;
            let mut sieve = Sieve { batch, at: 0 };
            let (mut seen, before) = (0, rows.len());
            let mut read = range.raw_query();
            while let Some(row) = read.next()? {
                seen += 1;
                if let Some(key) = sieve.keeps(K::column(row)?) {
                    rows.push(decode(key, &Columns(row))?);
                }
            }
            if seen <= cap {
                continue;
            }
            rows.truncate(before);
        }
        let json = serde_json::to_string(batch)
            .map_err(|e| StoreError::Corrupt(format!("key list: {e}")))?;
        let mut listed = conn.prepare_cached(&format!(
            "SELECT {columns} {from_where} ?1 AND {key} IN (SELECT value FROM json_each(?2))"
        ))?;
        listed.raw_bind_parameter(1, scope)?;
        listed.raw_bind_parameter(2, json)?;
        let mut read = listed.raw_query();
        while let Some(row) = read.next()? {
            if let Some(key) = asked(batch, K::column(row)?) {
                rows.push(decode(key, &Columns(row))?);
            }
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
            stamp: false,
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
        let external = [("C-1", 1), ("C-2", 2)];
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
            keys,
            Read::Range,
            |ext, r| Ok((ext.to_owned(), r.get(1)?)),
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
    /// must end the look-up with an error, on both the range read and the key list. A row
    /// the batch did not ask for is passed over unread, whatever its key holds.
    #[test]
    fn stored_text_that_is_not_utf8_is_a_corrupt_database_error() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (source_id INTEGER, ext_id TEXT, name TEXT);
             INSERT INTO t VALUES (1, 'A', 'а'), (1, CAST(x'42ff' AS TEXT), 'б'),
                                  (1, 'C', CAST(x'43ff' AS TEXT)), (1, 'D', 'г')",
        )
        .unwrap();
        let look_up = |keys: &[&str], read| {
            fetch_rows(
                &conn,
                "ext_id, name",
                "FROM t WHERE source_id =",
                1,
                keys.to_vec(),
                read,
                |ext, r| Ok((ext.to_owned(), r.text(1)?)),
            )
        };
        for read in [Read::Range, Read::Listed] {
            match look_up(&["A", "C"], read) {
                Err(StoreError::Corrupt(message)) => {
                    assert!(message.contains("not UTF-8"), "{message}")
                }
                other => panic!("{other:?}"),
            }
            // The range from A to D holds the broken key, which was not asked for.
            let rows = look_up(&["A", "D"], read).unwrap();
            let want = [("A", "а"), ("D", "г")].map(|(k, v)| (k.to_owned(), v.to_owned()));
            assert_eq!(rows, want);
        }
    }

    #[test]
    fn the_sieve_keeps_asked_keys_in_and_out_of_order() {
        let batch = ["b", "d", "f"];
        let rows = ["a", "b", "b", "c", "d", "g", "d", "f", "e"];
        let mut sieve = Sieve {
            batch: &batch,
            at: 0,
        };
        let kept: Vec<&str> = rows
            .into_iter()
            .filter_map(|row| sieve.keeps(row.as_bytes()))
            .collect();
        assert_eq!(kept, ["b", "b", "d", "d", "f"]);

        let ids = [2, 4];
        let mut sieve = Sieve { batch: &ids, at: 0 };
        let kept: Vec<i64> = [1, 2, 2, 3, 4, 5]
            .into_iter()
            .filter_map(|row| sieve.keeps(row))
            .collect();
        assert_eq!(kept, [2, 2, 4]);
    }

    /// A range read that meets more than twice its batch's keys in rows it did not ask for
    /// reads the batch again by the key list, and returns each asked row once.
    #[test]
    fn a_scattered_batch_is_read_by_its_key_list() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (source_id INTEGER, ext_id TEXT, n INTEGER)")
            .unwrap();
        for i in 0..100 {
            conn.execute("INSERT INTO t VALUES (1, ?1, ?2)", (format!("K{i:03}"), i))
                .unwrap();
        }
        let keys = ["K099", "K000", "K050"];
        let rows = fetch_rows(
            &conn,
            "ext_id, n",
            "FROM t WHERE source_id =",
            1,
            keys.to_vec(),
            Read::Range,
            |ext, r| Ok((ext, r.int(1)?)),
        )
        .unwrap();
        assert_eq!(rows, [("K000", 0), ("K050", 50), ("K099", 99)]);
    }
}
