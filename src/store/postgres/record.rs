//! The exact record-at-a-time path on PostgreSQL: the SQLite path's statements in
//! PostgreSQL's dialect (numbered parameters, `ON CONFLICT DO NOTHING`, `json_agg`). Every
//! check a record can fail runs before its first write.

use sqlx::PgConnection;

use crate::error::Code;
use crate::matching::{self, Card, Decision, Facts};
use crate::model::{Account, Client, Email, Outcome, Premise, Record, RecordOutcome, Role};
use crate::store::plan::refuse;
use crate::store::{Refusal, Scope, StoreError};
use crate::store::{new_email, now};

pub(super) type Applied = Result<RecordOutcome, Refusal>;

/// Applies one record; a refusal wrote nothing.
pub(super) async fn apply(
    conn: &mut PgConnection,
    scope: &Scope,
    record: &Record,
) -> Result<Applied, StoreError> {
    match record {
        Record::Premise(p) => apply_premise(conn, scope, p).await,
        Record::Client(c) => apply_client(conn, scope, c).await,
    }
}

/// Rows as the queries below select them.
type AccountRow = (i64, i64, String, Option<f64>, Option<i64>);
type ClientRow = (i64, Option<String>, bool, String, Option<String>);
type PremiseRow = (
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

async fn apply_premise(
    conn: &mut PgConnection,
    scope: &Scope,
    p: &Premise,
) -> Result<Applied, StoreError> {
    for account in &p.accounts {
        let owner: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT a.source_id, s.code, a.ext_id FROM accounts a JOIN sources s ON s.id = a.source_id
              WHERE a.org_id = $1 AND a.number = $2",
        )
        .bind(scope.org_id)
        .bind(&account.number)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((source_id, source, ext_id)) = owner
            && (source_id != scope.source_id || ext_id != account.id)
        {
            return Ok(Err(refuse(
                Code::AccountNumberTaken,
                format!(
                    "account {}: number {} already belongs to account {ext_id} of source {source} in this organization",
                    account.id, account.number
                ),
                Some("account.number"),
            )));
        }
    }
    let existing: Option<PremiseRow> = sqlx::query_as(
        "SELECT id, address, number, kind, floor, entrance, rooms, area, cadastral_number
           FROM premises WHERE source_id = $1 AND ext_id = $2",
    )
    .bind(scope.source_id)
    .bind(&p.id)
    .fetch_optional(&mut *conn)
    .await?;
    let kind = p.kind.as_str();
    let (premise_id, outcome) = match existing {
        None => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO premises (org_id, source_id, ext_id, address, number, kind, floor, entrance, rooms, area,
                                       cadastral_number)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(scope.org_id)
            .bind(scope.source_id)
            .bind(&p.id)
            .bind(&p.address)
            .bind(&p.number)
            .bind(kind)
            .bind(p.floor)
            .bind(p.entrance)
            .bind(p.rooms)
            .bind(p.area)
            .bind(&p.cadastral_number)
            .fetch_one(&mut *conn)
            .await?;
            (id, Outcome::Created)
        }
        Some((id, address, number, old_kind, floor, entrance, rooms, area, cadastral)) => {
            let same = address == p.address
                && number == p.number
                && old_kind == kind
                && floor == p.floor
                && entrance == p.entrance
                && rooms == p.rooms
                && area == p.area
                && cadastral == p.cadastral_number;
            if same {
                (id, Outcome::Unchanged)
            } else {
                sqlx::query(
                    "UPDATE premises SET address = $1, number = $2, kind = $3, floor = $4, entrance = $5, rooms = $6, area = $7,
                                         cadastral_number = $8 WHERE id = $9",
                )
                .bind(&p.address)
                .bind(&p.number)
                .bind(kind)
                .bind(p.floor)
                .bind(p.entrance)
                .bind(p.rooms)
                .bind(p.area)
                .bind(&p.cadastral_number)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                (id, Outcome::Updated)
            }
        }
    };
    let mut accounts = Vec::with_capacity(p.accounts.len());
    for account in &p.accounts {
        accounts.push(apply_account(conn, scope, premise_id, account).await?);
    }
    Ok(Ok(RecordOutcome::Premise {
        premise: outcome,
        accounts,
    }))
}

async fn apply_account(
    conn: &mut PgConnection,
    scope: &Scope,
    premise_id: i64,
    a: &Account,
) -> Result<Outcome, StoreError> {
    let existing: Option<AccountRow> = sqlx::query_as(
        "SELECT id, premise_id, number, area, residents FROM accounts WHERE source_id = $1 AND ext_id = $2",
    )
    .bind(scope.source_id)
    .bind(&a.id)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        None => {
            sqlx::query(
                "INSERT INTO accounts (org_id, source_id, ext_id, premise_id, number, area, residents)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(scope.org_id)
            .bind(scope.source_id)
            .bind(&a.id)
            .bind(premise_id)
            .bind(&a.number)
            .bind(a.area)
            .bind(a.residents)
            .execute(&mut *conn)
            .await?;
            Ok(Outcome::Created)
        }
        Some((id, old_premise, number, area, residents)) => {
            if old_premise == premise_id
                && number == a.number
                && area == a.area
                && residents == a.residents
            {
                return Ok(Outcome::Unchanged);
            }
            sqlx::query("UPDATE accounts SET premise_id = $1, number = $2, area = $3, residents = $4 WHERE id = $5")
                .bind(premise_id)
                .bind(&a.number)
                .bind(a.area)
                .bind(a.residents)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(Outcome::Updated)
        }
    }
}

/// A card as the table and the overwrite need it.
struct CardRow {
    card: Card,
    name: String,
    email: Option<String>,
}

async fn apply_client(
    conn: &mut PgConnection,
    scope: &Scope,
    c: &Client,
) -> Result<Applied, StoreError> {
    // References first: an unknown one refuses the record before anything is written.
    let mut premises: Vec<(i64, Role)> = Vec::with_capacity(c.premises.len());
    for (ext_id, role) in &c.premises {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM premises WHERE source_id = $1 AND ext_id = $2")
                .bind(scope.source_id)
                .bind(ext_id)
                .fetch_optional(&mut *conn)
                .await?;
        match id {
            Some(id) => premises.push((id, *role)),
            None => {
                return Ok(Err(refuse(
                    Code::UnknownPremiseRef,
                    format!(
                        "premise {ext_id} of source {} is not known: import the premise before its residents",
                        scope.source
                    ),
                    Some("premise.ref"),
                )));
            }
        }
    }
    premises.sort();
    let mut accounts: Vec<i64> = Vec::with_capacity(c.accounts.len());
    for ext_id in &c.accounts {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE source_id = $1 AND ext_id = $2")
                .bind(scope.source_id)
                .bind(ext_id)
                .fetch_optional(&mut *conn)
                .await?;
        match id {
            Some(id) => accounts.push(id),
            None => {
                return Ok(Err(refuse(
                    Code::UnknownAccountRef,
                    format!(
                        "account {ext_id} of source {} is not known: import its premise first",
                        scope.source
                    ),
                    Some("account.ref"),
                )));
            }
        }
    }
    accounts.sort_unstable();

    let a = card_by_external_id(conn, scope, &c.id).await?;
    let phone = c.phone.as_deref();
    let mut facts = Facts {
        by_external_id: a.as_ref().map(|r| r.card.clone()),
        ..Facts::default()
    };
    if let Some(p) = phone {
        let not_a = a.as_ref().map_or(-1, |r| r.card.id);
        facts.by_phone = sqlx::query_as::<_, (i64, Option<String>, bool)>(
            "SELECT id, phone, logged_in FROM clients WHERE org_id = $1 AND phone = $2 AND id <> $3",
        )
        .bind(scope.org_id)
        .bind(p)
        .bind(not_a)
        .fetch_optional(&mut *conn)
        .await?
        .map(|(id, phone, logged_in)| Card {
            id,
            phone,
            logged_in,
        });
        if Facts::phone_change(facts.by_external_id.as_ref(), phone) {
            facts.phone_in_other_organization =
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM (SELECT 1 FROM clients WHERE phone = $1 AND org_id <> $2 LIMIT 1) AS found")
                    .bind(p)
                    .bind(scope.org_id)
                    .fetch_one(&mut *conn)
                    .await?
                    > 0;
            facts.phone_in_history_of_another_card = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM (SELECT 1 FROM phone_history WHERE org_id = $1 AND phone = $2 AND client_id <> $3 LIMIT 1) AS found",
            )
            .bind(scope.org_id)
            .bind(p)
            .bind(not_a)
            .fetch_one(&mut *conn)
            .await?
                > 0;
        }
    }

    let outcome = match matching::decide(phone, &facts) {
        Decision::Refuse { code, message } => return Ok(Err(refuse(code, message, Some("phone")))),
        Decision::Create => {
            let email = match &c.email {
                Email::Valid(e) => Some(e.as_str()),
                Email::Absent | Email::Invalid => None,
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO clients (org_id, name, phone, email) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(scope.org_id)
            .bind(&c.name)
            .bind(phone)
            .bind(email)
            .fetch_one(&mut *conn)
            .await?;
            add_external_id(conn, scope, id, &c.id).await?;
            replace_links(conn, scope, id, &premises, &accounts).await?;
            Outcome::Created
        }
        Decision::AddExternalId { card } => {
            add_external_id(conn, scope, card, &c.id).await?;
            replace_links(conn, scope, card, &premises, &accounts).await?;
            Outcome::ExternalIdAdded
        }
        Decision::Update { card } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("update without a card".into()))?;
            let email = new_email(&c.email, row.email.as_deref());
            let same_links =
                links_of(conn, scope, card).await? == (premises.clone(), accounts.clone());
            if row.name == c.name && row.email.as_deref() == email && same_links {
                Outcome::Unchanged
            } else {
                sqlx::query("UPDATE clients SET name = $1, email = $2 WHERE id = $3")
                    .bind(&c.name)
                    .bind(email)
                    .bind(card)
                    .execute(&mut *conn)
                    .await?;
                if !same_links {
                    replace_links(conn, scope, card, &premises, &accounts).await?;
                }
                Outcome::Updated
            }
        }
        Decision::ChangePhone { card } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("phone change without a card".into()))?;
            retire_phone(conn, scope, card, row.card.phone.as_deref()).await?;
            overwrite(conn, card, c, phone, row.email.as_deref()).await?;
            replace_links(conn, scope, card, &premises, &accounts).await?;
            Outcome::Updated
        }
        Decision::Merge { winner, loser } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("merge without a card".into()))?;
            merge(conn, scope, winner, loser).await?;
            retire_phone(conn, scope, winner, row.card.phone.as_deref()).await?;
            overwrite(conn, winner, c, phone, row.email.as_deref()).await?;
            replace_links(conn, scope, winner, &premises, &accounts).await?;
            Outcome::Merged
        }
    };
    Ok(Ok(RecordOutcome::Client(outcome)))
}

async fn card_by_external_id(
    conn: &mut PgConnection,
    scope: &Scope,
    ext_id: &str,
) -> Result<Option<CardRow>, StoreError> {
    let row: Option<ClientRow> = sqlx::query_as(
        "SELECT c.id, c.phone, c.logged_in, c.name, c.email
           FROM client_external_ids x JOIN clients c ON c.id = x.client_id
          WHERE x.source_id = $1 AND x.ext_id = $2",
    )
    .bind(scope.source_id)
    .bind(ext_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(id, phone, logged_in, name, email)| CardRow {
        card: Card {
            id,
            phone,
            logged_in,
        },
        name,
        email,
    }))
}

async fn add_external_id(
    conn: &mut PgConnection,
    scope: &Scope,
    card: i64,
    ext_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO client_external_ids (source_id, ext_id, client_id) VALUES ($1, $2, $3)",
    )
    .bind(scope.source_id)
    .bind(ext_id)
    .bind(card)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type Links = (Vec<(i64, Role)>, Vec<i64>);

/// The card's links set by this source, sorted like a validated record's.
async fn links_of(conn: &mut PgConnection, scope: &Scope, card: i64) -> Result<Links, StoreError> {
    let premises: Vec<(i64, String)> = sqlx::query_as(
        "SELECT premise_id, role FROM client_premises WHERE client_id = $1 AND source_id = $2 ORDER BY premise_id",
    )
    .bind(card)
    .bind(scope.source_id)
    .fetch_all(&mut *conn)
    .await?;
    let premises = premises
        .into_iter()
        .map(|(id, role)| {
            Role::parse(&role)
                .map(|r| (id, r))
                .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let accounts: Vec<i64> = sqlx::query_scalar(
        "SELECT account_id FROM client_accounts WHERE client_id = $1 AND source_id = $2 ORDER BY account_id",
    )
    .bind(card)
    .bind(scope.source_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok((premises, accounts))
}

/// Sets the card's links from this source to exactly these; other sources' links stay.
async fn replace_links(
    conn: &mut PgConnection,
    scope: &Scope,
    card: i64,
    premises: &[(i64, Role)],
    accounts: &[i64],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM client_premises WHERE client_id = $1 AND source_id = $2")
        .bind(card)
        .bind(scope.source_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM client_accounts WHERE client_id = $1 AND source_id = $2")
        .bind(card)
        .bind(scope.source_id)
        .execute(&mut *conn)
        .await?;
    for (premise, role) in premises {
        sqlx::query("INSERT INTO client_premises (client_id, premise_id, source_id, role) VALUES ($1, $2, $3, $4)")
            .bind(card)
            .bind(premise)
            .bind(scope.source_id)
            .bind(role.as_str())
            .execute(&mut *conn)
            .await?;
    }
    for account in accounts {
        sqlx::query(
            "INSERT INTO client_accounts (client_id, account_id, source_id) VALUES ($1, $2, $3)",
        )
        .bind(card)
        .bind(account)
        .bind(scope.source_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn retire_phone(
    conn: &mut PgConnection,
    scope: &Scope,
    card: i64,
    old: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(old) = old {
        sqlx::query("INSERT INTO phone_history (org_id, client_id, phone, replaced_at, run_id) VALUES ($1, $2, $3, $4, $5)")
            .bind(scope.org_id)
            .bind(card)
            .bind(old)
            .bind(now())
            .bind(scope.run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn overwrite(
    conn: &mut PgConnection,
    card: i64,
    c: &Client,
    phone: Option<&str>,
    current_email: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE clients SET name = $1, email = $2, phone = $3 WHERE id = $4")
        .bind(&c.name)
        .bind(new_email(&c.email, current_email))
        .bind(phone)
        .bind(card)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Case 2d: the loser's external ids, links and phone history go to the winner; the loser
/// is deleted and remembered in `merges`.
async fn merge(
    conn: &mut PgConnection,
    scope: &Scope,
    winner: i64,
    loser: i64,
) -> Result<(), StoreError> {
    let loser_ids: String = sqlx::query_scalar(
        "SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', x.ext_id)
                                   ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"), '[]')::text
           FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = $1",
    )
    .bind(loser)
    .fetch_one(&mut *conn)
    .await?;
    for sql in [
        "UPDATE client_external_ids SET client_id = $1 WHERE client_id = $2",
        "INSERT INTO client_premises (client_id, premise_id, source_id, role)
         SELECT $1, premise_id, source_id, role FROM client_premises WHERE client_id = $2
         ON CONFLICT DO NOTHING",
        "DELETE FROM client_premises WHERE client_id = $2",
        "INSERT INTO client_accounts (client_id, account_id, source_id)
         SELECT $1, account_id, source_id FROM client_accounts WHERE client_id = $2
         ON CONFLICT DO NOTHING",
        "DELETE FROM client_accounts WHERE client_id = $2",
        "UPDATE phone_history SET client_id = $1 WHERE client_id = $2",
        "DELETE FROM clients WHERE id = $2",
    ] {
        sqlx::query(sql)
            .bind(winner)
            .bind(loser)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO merges (org_id, loser_client_id, winner_client_id, loser_external_ids, run_id, merged_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(scope.org_id)
    .bind(loser)
    .bind(winner)
    .bind(loser_ids)
    .bind(scope.run_id)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
