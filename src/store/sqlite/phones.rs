//! The cards' phones on SQLite (migrations 0009 to 0011): a new card's phone goes to
//! `card_phones_recent`, small enough to stay in the writer's cache; once that table fills,
//! it moves in key order (organization, phone) into `card_phones_middle`, that one into
//! `card_phones_older` once it fills in turn, and that one into the big `card_phones`. A move
//! reads and writes each page of the table it fills once for many phones, where inserting in
//! arrival order wrote a random page per card; keyed by organization first, it leaves the
//! pages of other organizations' phones alone.
//!
//! While an organization is loaded from empty, a Bloom filter of the phones moved out of the
//! recent table for it spares a new card's look-up the random pages of the others: every
//! move of this writer passes through [`Phones::created`], so "not in the filter" is "not
//! there", and a commit by any other process (`PRAGMA data_version`) drops the filter.

use fastbloom::BloomFilter;
use rusqlite::Connection;

use crate::store::StoreError;

/// The phone tables from the one new phones enter to the big one, each moving into the next.
const TABLES: [&str; 4] = [
    "card_phones_recent",
    "card_phones_middle",
    "card_phones_older",
    "card_phones",
];
/// The tables that move on when full: all but the big one.
const MOVING: usize = TABLES.len() - 1;

/// The writer's book of the phones waiting in the smaller tables, and the filter of the
/// organization being loaded.
#[derive(Debug)]
pub(crate) struct Phones {
    /// Entries in each table that moves on, as cards are created and moved: the recent
    /// table's counted at open, each other's the first time a move reaches it (counting
    /// a table of millions at every start would cost a small import more than its moves).
    waiting: [Option<usize>; MOVING],
    /// How many each takes before it moves on.
    full_at: [usize; MOVING],
    filter_bits: usize,
    /// The organization the last transaction wrote for, with its filter if it had no cards
    /// when first seen.
    org: Option<(i64, Option<BloomFilter>)>,
    /// `PRAGMA data_version` at the last transaction's start.
    version: i64,
}

/// New phones `card_phones_recent` takes per MiB of writer cache before they move. An
/// entry takes about 35 bytes in pages filled at random, so the table stays within about
/// half of the cache, where its random inserts hit cached pages.
const RECENT_PER_CACHE_MIB: usize = 16_000;
/// Each table after the recent one takes five times the one before. A move rewrites about
/// every page of the table it fills, so over N cards the moves into each of the two middle
/// tables rewrite about N·k/2 entries and those into the big one N²/(2·k²·recent), k being
/// this ratio: five writes the fewest at 10M cards at the default cache (7.1·N, where one
/// middle table at ten recent tables wrote 10.2·N).
const RATIO: usize = 5;
/// Filter bits per MiB of writer cache (one MiB): at the default cache, one wrong "may be
/// there" in 58 look-ups at 5M cards, one in 11 at 10M — each costs only the reads it would
/// have saved (five eighths of a MiB let one in 4 through at 10M).
const FILTER_BITS_PER_CACHE_MIB: usize = 8 << 20;
/// Three hashes: the fewest false answers for that many bits at 5M to 10M phones.
const FILTER_HASHES: u32 = 3;

impl Phones {
    /// The book of a writer with a cache of `cache_mib` over `conn`.
    pub fn open(conn: &Connection, cache_mib: u32) -> Result<Phones, StoreError> {
        let mut waiting = [None; MOVING];
        waiting[0] = Some(count(conn, TABLES[0])?);
        let recent = cache_mib as usize * RECENT_PER_CACHE_MIB;
        Ok(Phones {
            waiting,
            full_at: std::array::from_fn(|i| recent * RATIO.pow(i as u32)),
            filter_bits: cache_mib as usize * FILTER_BITS_PER_CACHE_MIB,
            org: None,
            version: -1,
        })
    }

    /// At a transaction's start, the write lock held: keeps the filter only if no other
    /// process committed since the last transaction, and starts one for an organization
    /// without cards (every card has an external id of one of its sources).
    pub fn begin(&mut self, conn: &Connection, org_id: i64) -> Result<(), StoreError> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if version != self.version {
            self.version = version;
            self.org = None;
        }
        if self.org.as_ref().is_some_and(|(org, _)| *org == org_id) {
            return Ok(());
        }
        let cards: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sources s JOIN client_external_ids x
                             ON x.source_id = s.id WHERE s.org_id = ?1)",
            [org_id],
            |r| r.get(0),
        )?;
        let filter = (!cards)
            .then(|| BloomFilter::with_num_bits(self.filter_bits.max(64)).hashes(FILTER_HASHES));
        self.org = Some((org_id, filter));
        Ok(())
    }

    /// Whether `phone` of `org_id` may be in `card_phones`: always, unless a filter says no.
    pub fn may_be_moved(&self, org_id: i64, phone: &str) -> bool {
        match &self.org {
            Some((org, Some(filter))) if *org == org_id => filter.contains(phone),
            _ => true,
        }
    }

    /// Counts `created` new cards; once `card_phones_recent` is full, moves it into the next
    /// table (the filter learning the phones of its organization first), and each table on
    /// into the next once it is full in turn. Whether anything moved. In the caller's
    /// transaction: a rollback undoes the moves, and the filter then only says "may be
    /// there" of a few phones that are not.
    pub fn created(&mut self, conn: &Connection, created: usize) -> Result<bool, StoreError> {
        let recent = self.waiting[0].get_or_insert(0);
        *recent += created;
        if *recent < self.full_at[0] {
            return Ok(false);
        }
        if let Some((org, Some(filter))) = &mut self.org {
            let mut phones =
                conn.prepare_cached("SELECT phone FROM card_phones_recent WHERE org_id = ?1")?;
            let mut rows = phones.query([*org])?;
            while let Some(row) = rows.next()? {
                let phone: String = row.get(0)?;
                filter.insert(&phone);
            }
        }
        for (i, pair) in TABLES.windows(2).enumerate() {
            let waiting = match self.waiting[i] {
                Some(n) => n,
                None => count(conn, pair[0])?,
            };
            if waiting < self.full_at[i] {
                self.waiting[i] = Some(waiting);
                break;
            }
            let moved = move_into(conn, pair[0], pair[1])?;
            // A table not counted yet is counted with what it was given, next round.
            if let Some(Some(next)) = self.waiting.get_mut(i + 1) {
                *next += moved;
            }
            self.waiting[i] = Some(0);
        }
        Ok(true)
    }
}

/// The entries in `table`.
fn count(conn: &Connection, table: &str) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    Ok(n as usize)
}

/// Moves every row of `from` into `into`, in key order; how many.
fn move_into(conn: &Connection, from: &str, into: &str) -> Result<usize, StoreError> {
    // OR FAIL: no statement journal, which would copy every page the move touches. A phone
    // already in `into` fails the move and its transaction: the planner keeps one card per
    // phone, and this is where a breach would show.
    let moved = conn.execute(
        &format!(
            "INSERT OR FAIL INTO {into} (phone, org_id, client_id)
             SELECT phone, org_id, client_id FROM {from} ORDER BY org_id, phone"
        ),
        [],
    )?;
    conn.execute(&format!("DELETE FROM {from}"), [])?;
    Ok(moved)
}
