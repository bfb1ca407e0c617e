//! rusqlite on the SQLite handles sqlx opened, for the set-based path's look-ups and
//! multi-row writes ([`bulk`](super::bulk)).
//!
//! sqlx runs every statement on its connection's worker thread. A look-up's rows therefore
//! came back as one JSON text that SQLite built and the apply thread parsed again, and every
//! value written was copied into an `Arc`, copied again
//! by SQLite and cleared after each statement. Here rows are read column by column from
//! SQLite's result and values bound straight from the plan, on the apply thread, inside the
//! same transactions; sqlx's `lock_handle` keeps its worker off the handle meanwhile.

use std::ops::{Deref, DerefMut};

use sqlx::SqliteConnection;
use sqlx::sqlite::LockedSqliteHandle;

use super::phones::Phones;
use crate::store::StoreError;

/// The connection every import writes through.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Declared before `conn`, so it is dropped first: its prepared statements are finalized
    /// before sqlx closes the handle, which panics on a handle with statements left open.
    direct: rusqlite::Connection,
    conn: SqliteConnection,
    phones: Phones,
}

impl Writer {
    /// The writer over `conn`, with its book of phones (at `cache_mib`).
    pub async fn new(mut conn: SqliteConnection, cache_mib: u32) -> Result<Self, StoreError> {
        let mut lock = conn.lock_handle().await?;
        // SAFETY: the handle stays open as long as `conn`, which is dropped after `direct`
        // (field order) and never closed explicitly. `direct` does not own the handle (it
        // does not close it) and is only used through `Writer::direct`, which holds sqlx's
        // lock on the handle meanwhile, so sqlx's worker makes no call on it then — or when
        // the writer is dropped, and nothing can use `conn` any more.
        #[allow(unsafe_code)]
        let direct = unsafe { rusqlite::Connection::from_handle(lock.as_raw_handle().as_ptr()) }?;
        // A full-size statement per table and kind of write, and the look-ups' statements,
        // with room to spare.
        direct.set_prepared_statement_cache_capacity(48);
        let phones = blocking(|| Phones::open(&direct, cache_mib))?;
        drop(lock);
        Ok(Writer {
            direct,
            conn,
            phones,
        })
    }

    /// rusqlite on the handle, while sqlx's worker is locked out of it.
    pub async fn direct(&mut self) -> Result<Direct<'_>, StoreError> {
        Ok(self.with_phones().await?.0)
    }

    /// [`Writer::direct`], and the book of the cards' phones this connection keeps.
    pub async fn with_phones(&mut self) -> Result<(Direct<'_>, &mut Phones), StoreError> {
        let lock = self.conn.lock_handle().await?;
        let direct = Direct {
            _lock: lock,
            conn: &self.direct,
        };
        Ok((direct, &mut self.phones))
    }
}

impl Deref for Writer {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// The writer's handle, borrowed from sqlx for a run of direct statements.
pub(crate) struct Direct<'w> {
    _lock: LockedSqliteHandle<'w>,
    conn: &'w rusqlite::Connection,
}

impl Deref for Direct<'_> {
    type Target = rusqlite::Connection;

    fn deref(&self) -> &rusqlite::Connection {
        self.conn
    }
}

/// Runs blocking work on a worker thread of the runtime without stalling the tasks queued
/// behind it (the API, a download): the worker's other tasks move to another thread first.
/// A current-thread runtime (the tests') has no other worker to hand them to.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
