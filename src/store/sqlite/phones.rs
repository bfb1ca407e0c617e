//! The cards' phones on SQLite (migration 0009): a new card's phone goes to
//! `card_phones_recent`, small enough to stay in the writer's cache; it moves in phone order
//! into `card_phones_middle` once the recent table fills, and the middle table into the big
//! `card_phones` once it fills in turn. A move reads and writes each page of the table it
//! fills once for many phones, where inserting in arrival order wrote a random page per card.
//!
//! While an organization is loaded from empty, a Bloom filter of the phones moved out of the
//! recent table for it spares a new card's look-up the random pages of the other two: every
//! move of this writer passes through [`Phones::created`], so "not in the filter" is "not
//! there", and a commit by any other process (`PRAGMA data_version`) drops the filter.

use fastbloom::BloomFilter;
use rusqlite::Connection;

use crate::store::StoreError;

/// The writer's book of recent phones, and the filter of the organization being loaded.
#[derive(Debug)]
pub(crate) struct Phones {
    /// Entries in `card_phones_recent` and `card_phones_middle`: counted at open, then as
    /// cards are created and moved.
    recent: usize,
    middle: usize,
    /// How many each takes before it moves on.
    recent_at: usize,
    middle_at: usize,
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
/// The middle table takes ten recent tables' worth. A move rewrites about every page of the
/// table it fills (some 115 entries a page), so over N cards the moves write about N·k/230
/// pages of the middle table and N²/(230·k·recent) of the big one, k being this ratio: ten
/// balances the two at 10M cards at the default cache, where sixteen writes 10 % more pages
/// (and a move straight into the big table wrote a page for fewer than two phones).
const MIDDLE_PER_RECENT: usize = 10;
/// Filter bits per MiB of writer cache (one MiB): at the default cache, one wrong "may be
/// there" in 58 look-ups at 5M cards, one in 11 at 10M — each costs only the reads it would
/// have saved (five eighths of a MiB let one in 4 through at 10M).
const FILTER_BITS_PER_CACHE_MIB: usize = 8 << 20;
/// Three hashes: the fewest false answers for that many bits at 5M to 10M phones.
const FILTER_HASHES: u32 = 3;

impl Phones {
    pub fn new(recent: usize, middle: usize, cache_mib: u32) -> Phones {
        let recent_at = cache_mib as usize * RECENT_PER_CACHE_MIB;
        Phones {
            recent,
            middle,
            recent_at,
            middle_at: recent_at * MIDDLE_PER_RECENT,
            filter_bits: cache_mib as usize * FILTER_BITS_PER_CACHE_MIB,
            org: None,
            version: -1,
        }
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

    /// Counts `created` new cards; once `card_phones_recent` is full, moves it into
    /// `card_phones_middle` (the filter learning the phones of its organization first), and
    /// that one into `card_phones` once it is full. Whether anything moved. In the caller's
    /// transaction: a rollback undoes the moves, and the filter then only says "may be
    /// there" of a few phones that are not.
    pub fn created(&mut self, conn: &Connection, created: usize) -> Result<bool, StoreError> {
        self.recent += created;
        if self.recent < self.recent_at {
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
        self.middle += move_into(conn, "card_phones_recent", "card_phones_middle")?;
        self.recent = 0;
        if self.middle >= self.middle_at {
            move_into(conn, "card_phones_middle", "card_phones")?;
            self.middle = 0;
        }
        Ok(true)
    }
}

/// Moves every row of `from` into `into`, in key order; how many.
fn move_into(conn: &Connection, from: &str, into: &str) -> Result<usize, StoreError> {
    // OR FAIL: no statement journal, which would copy every page the move touches. A phone
    // already in `into` fails the move and its transaction: the planner keeps one card per
    // phone, and this is where a breach would show.
    let moved = conn.execute(
        &format!(
            "INSERT OR FAIL INTO {into} (phone, org_id, client_id)
             SELECT phone, org_id, client_id FROM {from} ORDER BY phone, org_id"
        ),
        [],
    )?;
    conn.execute(&format!("DELETE FROM {from}"), [])?;
    Ok(moved)
}
