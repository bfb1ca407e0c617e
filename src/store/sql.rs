//! The statements both backends run, written once. A backend's database differs here only
//! in its [`Dialect`]: how a write transaction begins and the few statements whose SQL is
//! not standard (JSON aggregates, byte-wise text order). Parameters are `$N` on both:
//! sqlx maps SQLite's `$N` to the N-th argument as PostgreSQL does.
//!
//! Arguments are built with [`Args`] and rows read through [`Columns`], so the shared code
//! names no driver type and needs no bounds beyond `DB: Dialect`.

use sqlx::error::BoxDynError;
use sqlx::{
    Arguments, ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Row,
    SqlSafeStr, Type,
};

use super::StoreError;

/// A database the shared statements run on.
pub trait Dialect:
    Database<Connection: Exec<Self>, Arguments: Binds + IntoArguments<Self>, Row: Columns>
{
    /// Begins a transaction that writes: SQLite takes its write lock up front, so what the
    /// transaction read stays true until it commits.
    const BEGIN_WRITE: &'static str;
    /// Appended to an `ORDER BY` term on text so both backends order byte-wise.
    const BYTEWISE: &'static str;
    /// A card's (`$1`) external ids as a JSON array `[{source, id}]` in export order.
    const CARD_EXTERNAL_IDS: &'static str;
    /// A client as an export line: name, phone, e-mail, logged in, then its external ids,
    /// premises and accounts as JSON arrays; callers add `WHERE` and [`Self::CLIENT_ORDER`].
    const CLIENT_LINE: &'static str;
    /// The export's order of clients: by their first external id, byte-wise.
    const CLIENT_ORDER: &'static str;
    /// True for a row `r` of `runs` whose session (see [`Backend::attend`]) has ended.
    ///
    /// [`Backend::attend`]: super::Backend::attend
    const SESSION_GONE: &'static str;
    /// All clients of an organization (`$1`) as export lines, in export order.
    fn export_clients() -> String;
    /// The texts of a JSON array parameter (`$3`) as a sub-query's rows.
    fn texts(param: &str) -> String;
    /// The rows a statement changed (each driver keeps the count in a type of its own).
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

/// `sql` with rows archived by a snapshot included: statements leave them out with
/// `AND <alias>.archived_run IS NULL`, which this removes.
pub fn with_archived(sql: &str, archived: bool) -> String {
    if !archived {
        return sql.to_owned();
    }
    ["p", "a", "cp", "ca"]
        .iter()
        .fold(sql.to_owned(), |sql, alias| {
            sql.replace(&format!(" AND {alias}.archived_run IS NULL"), "")
        })
}

/// A connection as an executor of statements.
pub trait Exec<DB: Database>: Connection<Database = DB> {
    fn ex(&mut self) -> impl Executor<'_, Database = DB>;
}

impl<C> Exec<C::Database> for C
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    fn ex(&mut self) -> impl Executor<'_, Database = C::Database> {
        self
    }
}

/// The values the shared statements bind.
pub trait Binds: Arguments {
    fn add_int(&mut self, v: Option<i64>) -> Result<(), BoxDynError>;
    fn add_real(&mut self, v: Option<f64>) -> Result<(), BoxDynError>;
    fn add_text(&mut self, v: Option<&str>) -> Result<(), BoxDynError>;
    fn add_bytes(&mut self, v: &[u8]) -> Result<(), BoxDynError>;
}

impl<A> Binds for A
where
    A: Arguments,
    for<'q> Option<i64>: Encode<'q, A::Database> + Type<A::Database>,
    for<'q> Option<f64>: Encode<'q, A::Database> + Type<A::Database>,
    for<'q> Option<&'q str>: Encode<'q, A::Database> + Type<A::Database>,
    for<'q> &'q [u8]: Encode<'q, A::Database> + Type<A::Database>,
{
    fn add_int(&mut self, v: Option<i64>) -> Result<(), BoxDynError> {
        self.add(v)
    }
    fn add_real(&mut self, v: Option<f64>) -> Result<(), BoxDynError> {
        self.add(v)
    }
    fn add_text(&mut self, v: Option<&str>) -> Result<(), BoxDynError> {
        self.add(v)
    }
    fn add_bytes(&mut self, v: &[u8]) -> Result<(), BoxDynError> {
        self.add(v)
    }
}

/// The values the shared statements read, by column position.
pub trait Columns: Row {
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;
    fn opt_real(&self, i: usize) -> Result<Option<f64>, sqlx::Error>;
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, i: usize) -> Result<bool, sqlx::Error>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> Columns for R
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(i)
    }
    fn opt_real(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(i)
    }
    fn text(&self, i: usize) -> Result<String, sqlx::Error> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(i)
    }
    fn flag(&self, i: usize) -> Result<bool, sqlx::Error> {
        self.try_get(i)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(i)
    }
}

/// A value a statement binds.
pub trait Param {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError>;
}

impl Param for i64 {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_int(Some(self))
    }
}

impl Param for Option<i64> {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_int(self)
    }
}

impl Param for Option<f64> {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_real(self)
    }
}

impl Param for &str {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_text(Some(self))
    }
}

impl Param for &String {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_text(Some(self))
    }
}

impl Param for Option<&str> {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_text(self)
    }
}

impl Param for &Option<String> {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_text(self.as_deref())
    }
}

impl Param for &[u8] {
    fn add_to(self, args: &mut impl Binds) -> Result<(), BoxDynError> {
        args.add_bytes(self)
    }
}

/// A statement's arguments, in order; the first that fails to encode fails the statement.
pub struct Args<DB: Database>(Result<DB::Arguments, BoxDynError>);

impl<DB: Dialect> Args<DB> {
    pub fn new() -> Self {
        Args(Ok(DB::Arguments::default()))
    }

    fn into_arguments(self) -> Result<DB::Arguments, StoreError> {
        self.0.map_err(|e| StoreError::Sql(sqlx::Error::Encode(e)))
    }

    pub fn with(mut self, value: impl Param) -> Self {
        if let Ok(args) = &mut self.0
            && let Err(e) = value.add_to(args)
        {
            self.0 = Err(e);
        }
        self
    }
}

/// Shorthand: `args![a, b]` is `Args::new().with(a).with(b)`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        $crate::store::sql::Args::new()$(.with($value))*
    };
}
pub(crate) use args;

/// Begins a transaction that writes ([`Dialect::BEGIN_WRITE`]).
pub async fn begin_write<DB: Dialect>(
    conn: &mut DB::Connection,
) -> Result<sqlx::Transaction<'_, DB>, StoreError> {
    // `AssertSqlSafe<&str>` is safe SQL for any lifetime, which an `async` caller's future
    // needs to be `Send`; a bare `&'static str` is not.
    Ok(conn
        .begin_with(sqlx::AssertSqlSafe(DB::BEGIN_WRITE))
        .await?)
}

/// Runs a statement; how many rows it changed.
pub async fn execute<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: impl SqlSafeStr,
    args: Args<DB>,
) -> Result<u64, StoreError> {
    let done = sqlx::query_with::<DB, _>(sql, args.into_arguments()?)
        .execute(conn.ex())
        .await?;
    Ok(DB::rows_affected(&done))
}

/// The first row of a statement's result, if any.
pub async fn optional<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: impl SqlSafeStr,
    args: Args<DB>,
) -> Result<Option<DB::Row>, StoreError> {
    Ok(sqlx::query_with::<DB, _>(sql, args.into_arguments()?)
        .fetch_optional(conn.ex())
        .await?)
}

/// The one row a statement returns.
pub async fn one<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: impl SqlSafeStr,
    args: Args<DB>,
) -> Result<DB::Row, StoreError> {
    Ok(sqlx::query_with::<DB, _>(sql, args.into_arguments()?)
        .fetch_one(conn.ex())
        .await?)
}

/// Every row of a statement's result.
pub async fn all<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: impl SqlSafeStr,
    args: Args<DB>,
) -> Result<Vec<DB::Row>, StoreError> {
    Ok(sqlx::query_with::<DB, _>(sql, args.into_arguments()?)
        .fetch_all(conn.ex())
        .await?)
}

/// Calls `each` with every row of a statement's result as it streams in.
pub async fn each<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: impl SqlSafeStr,
    args: Args<DB>,
    mut each: impl FnMut(&DB::Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use futures::TryStreamExt;
    let mut rows = sqlx::query_with::<DB, _>(sql, args.into_arguments()?).fetch(conn.ex());
    while let Some(row) = rows.try_next().await? {
        each(&row)?;
    }
    Ok(())
}
