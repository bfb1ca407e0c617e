//! PostgreSQL's side of the set-based path ([`plan`](crate::store::plan)): each look-up is
//! one statement over an array of keys (`= ANY($n)`), each write one `INSERT … SELECT FROM
//! UNNEST(…)` of column arrays, so a chunk costs a dozen round trips, not one per row.
//!
//! Ids for new rows are taken from the tables' sequences before planning, as many as the run
//! could create at most: other organizations write at the same time under their own lock,
//! so `max(id) + 1` is not free here. Unused ids leave gaps, as any rolled-back insert does.

use sqlx::PgConnection;

use crate::model::{Record, RecordOutcome, Role};
use crate::store::plan::{
    AccountRow, Bulk, CardFound, Ids, KeySet, Keys, Loaded, Plan, PremiseRow, listed, own_key,
};
use crate::store::{Refusal, Scope, StoreError};

/// Called on the chunk's transaction, which holds the organization's advisory lock.
impl Bulk for PgConnection {
    async fn load<'k>(&mut self, scope: &Scope, keys: &Keys<'k>) -> Result<Loaded<'k>, StoreError> {
        let conn = self;
        let mut loaded = Loaded::new(keys);
        let rows: Vec<PremiseSelect> = sqlx::query_as(
            "SELECT ext_id, id, address, number, kind, floor, entrance, rooms, area, cadastral_number
               FROM premises WHERE source_id = $1 AND ext_id = ANY($2)",
        )
        .bind(scope.source_id)
        .bind(listed(&keys.premises))
        .fetch_all(&mut *conn)
        .await?;
        for (ext, id, address, number, kind, floor, entrance, rooms, area, cadastral_number) in rows
        {
            let row = PremiseRow {
                id,
                address,
                number,
                kind,
                floor,
                entrance,
                rooms,
                area,
                cadastral_number,
            };
            if let Some(ext) = own_key(&keys.premises, &ext) {
                loaded.premise(ext, row);
            }
        }
        let rows: Vec<AccountSelect> = sqlx::query_as(
            "SELECT ext_id, id, premise_id, number, area, residents
           FROM accounts WHERE source_id = $1 AND ext_id = ANY($2)",
        )
        .bind(scope.source_id)
        .bind(listed(&keys.accounts))
        .fetch_all(&mut *conn)
        .await?;
        for (ext, id, premise_id, number, area, residents) in rows {
            let row = AccountRow {
                id,
                premise_id,
                number,
                area,
                residents,
            };
            if let Some(ext) = own_key(&keys.accounts, &ext) {
                loaded.account(ext, row);
            }
        }
        for (ext, id) in ids_by_ext(conn, scope, "premises", &keys.premise_refs).await? {
            if let Some(ext) = own_key(&keys.premise_refs, &ext) {
                loaded.premise_ref(ext, id);
            }
        }
        for (ext, id) in ids_by_ext(conn, scope, "accounts", &keys.account_refs).await? {
            if let Some(ext) = own_key(&keys.account_refs, &ext) {
                loaded.account_ref(ext, id);
            }
        }
        let numbers = loaded.unknown_numbers(keys);
        let rows: Vec<(String, i64, String, String)> = if numbers.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT a.number, a.source_id, s.code, a.ext_id
                   FROM accounts a JOIN sources s ON s.id = a.source_id WHERE a.org_id = $1 AND a.number = ANY($2)",
            )
            .bind(scope.org_id)
            .bind(numbers)
            .fetch_all(&mut *conn)
            .await?
        };
        for (number, source_id, source, ext) in rows {
            if let Some(number) = own_key(&keys.numbers, &number) {
                loaded.number(number, source_id, source, ext);
            }
        }
        let rows: Vec<CardSelect> = sqlx::query_as(
            "SELECT x.ext_id, c.id, c.phone, c.logged_in, c.name, c.email
           FROM client_external_ids x JOIN clients c ON c.id = x.client_id
          WHERE x.source_id = $1 AND x.ext_id = ANY($2)",
        )
        .bind(scope.source_id)
        .bind(listed(&keys.clients))
        .fetch_all(&mut *conn)
        .await?;
        for (ext, id, phone, logged_in, name, email) in rows {
            let card = CardFound {
                phone,
                logged_in,
                name,
                email,
            };
            if let Some(ext) = own_key(&keys.clients, &ext) {
                loaded.card_by_ext(ext, id, card);
            }
        }
        // Phones of the cards found above are known; look up only the others.
        let phones = loaded.unknown_phones(keys);
        if !phones.is_empty() {
            let rows: Vec<(i64, String, bool, String, Option<String>)> = sqlx::query_as(
            "SELECT id, phone, logged_in, name, email FROM clients WHERE org_id = $1 AND phone = ANY($2)",
        )
        .bind(scope.org_id)
        .bind(phones)
        .fetch_all(&mut *conn)
        .await?;
            for (id, phone, logged_in, name, email) in rows {
                let card = CardFound {
                    phone: Some(phone),
                    logged_in,
                    name,
                    email,
                };
                loaded.card(id, card);
            }
        }
        let cards = loaded.card_ids();
        if !cards.is_empty() {
            let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT client_id, premise_id, role FROM client_premises WHERE source_id = $1 AND client_id = ANY($2)",
        )
        .bind(scope.source_id)
        .bind(&cards)
        .fetch_all(&mut *conn)
        .await?;
            for (card, premise, role) in rows {
                let role = Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?;
                loaded.premise_link(card, premise, role);
            }
            let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT client_id, account_id FROM client_accounts WHERE source_id = $1 AND client_id = ANY($2)",
        )
        .bind(scope.source_id)
        .bind(&cards)
        .fetch_all(&mut *conn)
        .await?;
            for (card, account) in rows {
                loaded.account_link(card, account);
            }
        }
        let (premises, accounts, cards) = loaded.most_new(keys);
        let (p, a, c): (Vec<i64>, Vec<i64>, Vec<i64>) = if premises + accounts + cards == 0 {
            Default::default()
        } else {
            sqlx::query_as(
            "SELECT array(SELECT nextval('premises_id_seq') AS id FROM generate_series(1, $1) ORDER BY id),
                    array(SELECT nextval('accounts_id_seq') AS id FROM generate_series(1, $2) ORDER BY id),
                    array(SELECT nextval('clients_id_seq') AS id FROM generate_series(1, $3) ORDER BY id)",
        )
        .bind(count(premises)?)
        .bind(count(accounts)?)
        .bind(count(cards)?)
        .fetch_one(&mut *conn)
        .await?
        };
        loaded.premise_ids = Ids::Reserved(p.into_iter());
        loaded.account_ids = Ids::Reserved(a.into_iter());
        loaded.card_ids = Ids::Reserved(c.into_iter());
        Ok(loaded)
    }

    /// Writes everything the plan changed: one statement per table, columns as arrays.
    async fn write(&mut self, scope: &Scope, plan: &Plan<'_>) -> Result<(), StoreError> {
        let conn = self;
        let premises = plan.premises();
        if !premises.is_empty() {
            let mut cols = PremiseColumns::default();
            for (ext, p) in premises {
                cols.push(ext, p);
            }
            sqlx::query(
            "INSERT INTO premises (id, org_id, source_id, ext_id, address, number, kind, floor, entrance, rooms, area,
                                   cadastral_number)
             SELECT id, $1, $2, ext_id, address, number, kind, floor, entrance, rooms, area, cadastral_number
               FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                           $10::bigint[], $11::float8[], $12::text[])
                 AS t(id, ext_id, address, number, kind, floor, entrance, rooms, area, cadastral_number)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, number = excluded.number, kind = excluded.kind,
                floor = excluded.floor, entrance = excluded.entrance, rooms = excluded.rooms, area = excluded.area,
                cadastral_number = excluded.cadastral_number",
        )
        .bind(scope.org_id)
        .bind(scope.source_id)
        .bind(cols.id)
        .bind(cols.ext_id)
        .bind(cols.address)
        .bind(cols.number)
        .bind(cols.kind)
        .bind(cols.floor)
        .bind(cols.entrance)
        .bind(cols.rooms)
        .bind(cols.area)
        .bind(cols.cadastral_number)
        .execute(&mut *conn)
        .await?;
        }
        let accounts = plan.accounts();
        if !accounts.is_empty() {
            let mut cols = AccountColumns::default();
            for (ext, a) in accounts {
                cols.push(ext, a);
            }
            sqlx::query(
            "INSERT INTO accounts (id, org_id, source_id, ext_id, premise_id, number, area, residents)
             SELECT id, $1, $2, ext_id, premise_id, number, area, residents
               FROM UNNEST($3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::float8[], $8::bigint[])
                 AS t(id, ext_id, premise_id, number, area, residents)
             ON CONFLICT (id) DO UPDATE SET premise_id = excluded.premise_id, area = excluded.area,
                residents = excluded.residents",
        )
        .bind(scope.org_id)
        .bind(scope.source_id)
        .bind(cols.id)
        .bind(cols.ext_id)
        .bind(cols.premise_id)
        .bind(cols.number)
        .bind(cols.area)
        .bind(cols.residents)
        .execute(&mut *conn)
        .await?;
        }
        let cards = plan.cards();
        if !cards.is_empty() {
            let ids: Vec<i64> = cards.iter().map(|(id, _)| *id).collect();
            let names: Vec<&str> = cards.iter().map(|(_, c)| c.name.as_str()).collect();
            let phones: Vec<Option<&str>> = cards.iter().map(|(_, c)| c.phone.as_deref()).collect();
            let emails: Vec<Option<&str>> = cards.iter().map(|(_, c)| c.email.as_deref()).collect();
            sqlx::query(
            "INSERT INTO clients (id, org_id, name, phone, email)
             SELECT id, $1, name, phone, email FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[])
                 AS t(id, name, phone, email)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email",
        )
        .bind(scope.org_id)
        .bind(ids)
        .bind(names)
        .bind(phones)
        .bind(emails)
        .execute(&mut *conn)
        .await?;
        }
        let external = plan.external_ids();
        if !external.is_empty() {
            let exts: Vec<&str> = external.iter().map(|&(ext, _)| ext).collect();
            let ids: Vec<i64> = external.iter().map(|(_, id)| *id).collect();
            sqlx::query(
            "INSERT INTO client_external_ids (source_id, ext_id, client_id)
             SELECT $1, ext_id, client_id FROM UNNEST($2::text[], $3::bigint[]) AS t(ext_id, client_id)",
        )
        .bind(scope.source_id)
        .bind(exts)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
        }
        let relinked = plan.relinked();
        if !relinked.is_empty() {
            for statement in [
                "DELETE FROM client_premises WHERE source_id = $1 AND client_id = ANY($2)",
                "DELETE FROM client_accounts WHERE source_id = $1 AND client_id = ANY($2)",
            ] {
                sqlx::query(statement)
                    .bind(scope.source_id)
                    .bind(relinked)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let links = plan.premise_links();
        if !links.is_empty() {
            let cards: Vec<i64> = links.iter().map(|l| l.0).collect();
            let premises: Vec<i64> = links.iter().map(|l| l.1).collect();
            let roles: Vec<&str> = links.iter().map(|l| l.2.as_str()).collect();
            sqlx::query(
            "INSERT INTO client_premises (client_id, premise_id, source_id, role)
             SELECT client_id, premise_id, $1, role FROM UNNEST($2::bigint[], $3::bigint[], $4::text[])
                 AS t(client_id, premise_id, role)",
        )
        .bind(scope.source_id)
        .bind(cards)
        .bind(premises)
        .bind(roles)
        .execute(&mut *conn)
        .await?;
        }
        let links = plan.account_links();
        if !links.is_empty() {
            let (cards, accounts): (Vec<i64>, Vec<i64>) = links.into_iter().unzip();
            sqlx::query(
            "INSERT INTO client_accounts (client_id, account_id, source_id)
             SELECT client_id, account_id, $1 FROM UNNEST($2::bigint[], $3::bigint[]) AS t(client_id, account_id)",
        )
        .bind(scope.source_id)
        .bind(cards)
        .bind(accounts)
        .execute(&mut *conn)
        .await?;
        }
        Ok(())
    }

    async fn exact(
        &mut self,
        scope: &Scope,
        record: &Record,
    ) -> Result<Result<RecordOutcome, Refusal>, StoreError> {
        crate::store::exact::apply::<sqlx::Postgres>(self, scope, record).await
    }
}

type PremiseSelect = (
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<String>,
);
type AccountSelect = (String, i64, i64, String, Option<f64>, Option<i64>);
type CardSelect = (String, i64, Option<String>, bool, String, Option<String>);

/// Ids of this source's rows of `table` by external id: the unique index answers alone.
async fn ids_by_ext(
    conn: &mut PgConnection,
    scope: &Scope,
    table: &str,
    keys: &KeySet<'_>,
) -> Result<Vec<(String, i64)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT ext_id, id FROM {table} WHERE source_id = $1 AND ext_id = ANY($2)");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.source_id)
        .bind(listed(keys))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows)
}

fn count(n: usize) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} ids to reserve")))
}

/// Premise rows as column arrays for `UNNEST`.
#[derive(Default)]
struct PremiseColumns<'p> {
    id: Vec<i64>,
    ext_id: Vec<&'p str>,
    address: Vec<&'p str>,
    number: Vec<&'p str>,
    kind: Vec<&'p str>,
    floor: Vec<Option<i64>>,
    entrance: Vec<Option<i64>>,
    rooms: Vec<Option<i64>>,
    area: Vec<Option<f64>>,
    cadastral_number: Vec<Option<&'p str>>,
}

impl<'p> PremiseColumns<'p> {
    fn push(&mut self, ext: &'p str, p: &'p PremiseRow) {
        self.id.push(p.id);
        self.ext_id.push(ext);
        self.address.push(&p.address);
        self.number.push(&p.number);
        self.kind.push(&p.kind);
        self.floor.push(p.floor);
        self.entrance.push(p.entrance);
        self.rooms.push(p.rooms);
        self.area.push(p.area);
        self.cadastral_number.push(p.cadastral_number.as_deref());
    }
}

/// Account rows as column arrays for `UNNEST`.
#[derive(Default)]
struct AccountColumns<'a> {
    id: Vec<i64>,
    ext_id: Vec<&'a str>,
    premise_id: Vec<i64>,
    number: Vec<&'a str>,
    area: Vec<Option<f64>>,
    residents: Vec<Option<i64>>,
}

impl<'a> AccountColumns<'a> {
    fn push(&mut self, ext: &'a str, a: &'a AccountRow) {
        self.id.push(a.id);
        self.ext_id.push(ext);
        self.premise_id.push(a.premise_id);
        self.number.push(&a.number);
        self.area.push(a.area);
        self.residents.push(a.residents);
    }
}
