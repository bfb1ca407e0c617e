//! The exact record-at-a-time path, for both backends: every check a record can fail runs
//! before its first write. The set-based path ([`super::plan`]) hands it the records that
//! change a phone or an account number (phone history, merges, number swaps), where
//! set-based writes would have to replay the table's every step anyway.

use crate::error::Code;
use crate::matching::{self, Card, Decision, Facts};
use crate::model::{Account, Client, Email, Merge, Outcome, Premise, Record, RecordOutcome, Role};
use crate::store::plan::{PremiseRow, refuse};
use crate::store::sql::{Columns, Dialect, all, args, execute, one, optional};
use crate::store::{Refusal, Scope, StoreError, new_email, now};

pub(super) type Applied = Result<RecordOutcome, Refusal>;

/// Applies one record on `conn`, inside the caller's transaction; a refusal wrote nothing.
pub(super) async fn apply<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    record: &Record,
) -> Result<Applied, StoreError> {
    match record {
        Record::Premise(p) => apply_premise::<DB>(conn, scope, p).await,
        Record::Client(c) => apply_client::<DB>(conn, scope, c).await,
    }
}

async fn apply_premise<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    p: &Premise,
) -> Result<Applied, StoreError> {
    for account in &p.accounts {
        let owner = optional::<DB>(
            conn,
            "SELECT a.source_id, s.code, a.ext_id FROM accounts a JOIN sources s ON s.id = a.source_id
              WHERE a.org_id = $1 AND a.number = $2",
            args![scope.org_id, &account.number],
        )
        .await?;
        if let Some(row) = owner {
            let (source_id, source, ext_id) = (row.int(0)?, row.text(1)?, row.text(2)?);
            if source_id != scope.source_id || ext_id != account.id {
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
    }
    let existing = optional::<DB>(
        conn,
        "SELECT id, address, number, kind, floor, entrance, rooms, area, cadastral_number
           FROM premises WHERE source_id = $1 AND ext_id = $2",
        args![scope.source_id, &p.id],
    )
    .await?
    .map(|row| premise_row(&row))
    .transpose()?;
    let kind = p.kind.as_str();
    let (premise_id, outcome) = match existing {
        None => {
            let row = one::<DB>(
                conn,
                "INSERT INTO premises (org_id, source_id, ext_id, address, number, kind, floor, entrance, rooms, area,
                                       cadastral_number)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                args![
                    scope.org_id,
                    scope.source_id,
                    &p.id,
                    &p.address,
                    &p.number,
                    kind,
                    p.floor,
                    p.entrance,
                    p.rooms,
                    p.area,
                    &p.cadastral_number,
                ],
            )
            .await?;
            (row.int(0)?, Outcome::Created)
        }
        Some(row) if row.is(p) => (row.id, Outcome::Unchanged),
        Some(row) => {
            execute::<DB>(
                conn,
                "UPDATE premises SET address = $1, number = $2, kind = $3, floor = $4, entrance = $5, rooms = $6, area = $7,
                                     cadastral_number = $8 WHERE id = $9",
                args![
                    &p.address,
                    &p.number,
                    kind,
                    p.floor,
                    p.entrance,
                    p.rooms,
                    p.area,
                    &p.cadastral_number,
                    row.id,
                ],
            )
            .await?;
            (row.id, Outcome::Updated)
        }
    };
    let mut accounts = Vec::with_capacity(p.accounts.len());
    for account in &p.accounts {
        accounts.push(apply_account::<DB>(conn, scope, premise_id, account).await?);
    }
    Ok(Ok(RecordOutcome::Premise {
        premise: outcome,
        accounts,
    }))
}

fn premise_row(row: &impl Columns) -> Result<PremiseRow, StoreError> {
    Ok(PremiseRow {
        id: row.int(0)?,
        address: row.text(1)?,
        number: row.text(2)?,
        kind: row.text(3)?,
        floor: row.opt_int(4)?,
        entrance: row.opt_int(5)?,
        rooms: row.opt_int(6)?,
        area: row.opt_real(7)?,
        cadastral_number: row.opt_text(8)?,
    })
}

async fn apply_account<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    premise_id: i64,
    a: &Account,
) -> Result<Outcome, StoreError> {
    let existing = optional::<DB>(
        conn,
        "SELECT id, premise_id, number, area, residents FROM accounts WHERE source_id = $1 AND ext_id = $2",
        args![scope.source_id, &a.id],
    )
    .await?;
    let Some(row) = existing else {
        execute::<DB>(
            conn,
            "INSERT INTO accounts (org_id, source_id, ext_id, premise_id, number, area, residents)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                scope.org_id,
                scope.source_id,
                &a.id,
                premise_id,
                &a.number,
                a.area,
                a.residents
            ],
        )
        .await?;
        return Ok(Outcome::Created);
    };
    if row.int(1)? == premise_id
        && row.text(2)? == a.number
        && row.opt_real(3)? == a.area
        && row.opt_int(4)? == a.residents
    {
        return Ok(Outcome::Unchanged);
    }
    execute::<DB>(
        conn,
        "UPDATE accounts SET premise_id = $1, number = $2, area = $3, residents = $4 WHERE id = $5",
        args![premise_id, &a.number, a.area, a.residents, row.int(0)?],
    )
    .await?;
    Ok(Outcome::Updated)
}

/// A card as the table and the overwrite need it.
struct CardRow {
    card: Card,
    name: String,
    email: Option<String>,
}

async fn apply_client<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    c: &Client,
) -> Result<Applied, StoreError> {
    // References first: an unknown one refuses the record before anything is written.
    let mut premises: Vec<(i64, Role)> = Vec::with_capacity(c.premises.len());
    for (ext_id, role) in &c.premises {
        let found = optional::<DB>(
            conn,
            "SELECT id FROM premises WHERE source_id = $1 AND ext_id = $2",
            args![scope.source_id, ext_id],
        )
        .await?;
        match found {
            Some(row) => premises.push((row.int(0)?, *role)),
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
        let found = optional::<DB>(
            conn,
            "SELECT id FROM accounts WHERE source_id = $1 AND ext_id = $2",
            args![scope.source_id, ext_id],
        )
        .await?;
        match found {
            Some(row) => accounts.push(row.int(0)?),
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

    let a = card_by_external_id::<DB>(conn, scope, &c.id).await?;
    let phone = c.phone.as_deref();
    let facts = facts::<DB>(conn, scope, a.as_ref().map(|r| &r.card), phone).await?;

    let outcome = match matching::decide(phone, &facts) {
        Decision::Refuse { code, message } => return Ok(Err(refuse(code, message, Some("phone")))),
        Decision::Create => {
            let email = match &c.email {
                Email::Valid(e) => Some(e.as_str()),
                Email::Absent | Email::Invalid => None,
            };
            let row = one::<DB>(
                conn,
                "INSERT INTO clients (org_id, name, phone, email) VALUES ($1, $2, $3, $4) RETURNING id",
                args![scope.org_id, &c.name, phone, email],
            )
            .await?;
            let id = row.int(0)?;
            add_external_id::<DB>(conn, scope, id, &c.id).await?;
            replace_links::<DB>(conn, scope, id, &premises, &accounts).await?;
            Outcome::Created
        }
        Decision::AddExternalId { card } => {
            add_external_id::<DB>(conn, scope, card, &c.id).await?;
            replace_links::<DB>(conn, scope, card, &premises, &accounts).await?;
            Outcome::ExternalIdAdded
        }
        Decision::Update { card } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("update without a card".into()))?;
            let email = new_email(&c.email, row.email.as_deref());
            let same_links =
                links_of::<DB>(conn, scope, card).await? == (premises.clone(), accounts.clone());
            if row.name == c.name && row.email.as_deref() == email && same_links {
                Outcome::Unchanged
            } else {
                execute::<DB>(
                    conn,
                    "UPDATE clients SET name = $1, email = $2 WHERE id = $3",
                    args![&c.name, email, card],
                )
                .await?;
                if !same_links {
                    replace_links::<DB>(conn, scope, card, &premises, &accounts).await?;
                }
                Outcome::Updated
            }
        }
        Decision::ChangePhone { card } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("phone change without a card".into()))?;
            retire_phone::<DB>(conn, scope, card, row.card.phone.as_deref()).await?;
            overwrite::<DB>(conn, card, c, phone, row.email.as_deref()).await?;
            replace_links::<DB>(conn, scope, card, &premises, &accounts).await?;
            Outcome::Updated
        }
        Decision::Merge { winner, loser } => {
            let row = a
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("merge without a card".into()))?;
            merge::<DB>(conn, scope, winner, loser).await?;
            retire_phone::<DB>(conn, scope, winner, row.card.phone.as_deref()).await?;
            overwrite::<DB>(conn, winner, c, phone, row.email.as_deref()).await?;
            replace_links::<DB>(conn, scope, winner, &premises, &accounts).await?;
            return Ok(Ok(RecordOutcome::Client {
                outcome: Outcome::Merged,
                merged: Some(Merge {
                    into: winner,
                    from: loser,
                }),
            }));
        }
    };
    Ok(Ok(RecordOutcome::Client {
        outcome,
        merged: None,
    }))
}

/// What the matching table needs to know about the record's phone, beside card `a` (the
/// card its external id names).
async fn facts<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    a: Option<&Card>,
    phone: Option<&str>,
) -> Result<Facts, StoreError> {
    let mut facts = Facts {
        by_external_id: a.cloned(),
        ..Facts::default()
    };
    let Some(p) = phone else {
        return Ok(facts);
    };
    let not_a = a.map_or(-1, |card| card.id);
    facts.by_phone = optional::<DB>(
        conn,
        "SELECT c.id, c.phone, c.logged_in FROM client_phones p JOIN clients c ON c.id = p.client_id
          WHERE p.org_id = $1 AND p.phone = $2 AND p.client_id <> $3",
        args![scope.org_id, p, not_a],
    )
    .await?
    .map(|row| card(&row))
    .transpose()?;
    if Facts::phone_change(facts.by_external_id.as_ref(), phone) {
        facts.phone_in_other_organization = one::<DB>(
            conn,
            // Organization by organization, as SQLite keys its phone tables.
            "SELECT count(*) FROM (SELECT 1 FROM client_phones
              WHERE org_id IN (SELECT id FROM organizations WHERE id <> $2) AND phone = $1 LIMIT 1) AS found",
            args![p, scope.org_id],
        )
        .await?
        .int(0)?
            > 0;
        facts.phone_in_history_of_another_card = one::<DB>(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM phone_history WHERE org_id = $1 AND phone = $2 AND client_id <> $3 LIMIT 1) AS found",
            args![scope.org_id, p, not_a],
        )
        .await?
        .int(0)?
            > 0;
    }
    Ok(facts)
}

/// A card from the columns `id, phone, logged_in`.
fn card(row: &impl Columns) -> Result<Card, StoreError> {
    Ok(Card {
        id: row.int(0)?,
        phone: row.opt_text(1)?,
        logged_in: row.flag(2)?,
    })
}

async fn card_by_external_id<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    ext_id: &str,
) -> Result<Option<CardRow>, StoreError> {
    let row = optional::<DB>(
        conn,
        "SELECT c.id, c.phone, c.logged_in, c.name, c.email
           FROM client_external_ids x JOIN clients c ON c.id = x.client_id
          WHERE x.source_id = $1 AND x.ext_id = $2",
        args![scope.source_id, ext_id],
    )
    .await?;
    row.map(|row| {
        Ok(CardRow {
            card: card(&row)?,
            name: row.text(3)?,
            email: row.opt_text(4)?,
        })
    })
    .transpose()
}

async fn add_external_id<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    card: i64,
    ext_id: &str,
) -> Result<(), StoreError> {
    execute::<DB>(
        conn,
        "INSERT INTO client_external_ids (source_id, ext_id, client_id) VALUES ($1, $2, $3)",
        args![scope.source_id, ext_id, card],
    )
    .await?;
    Ok(())
}

type Links = (Vec<(i64, Role)>, Vec<i64>);

/// The card's links set by this source, sorted like a validated record's.
async fn links_of<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    card: i64,
) -> Result<Links, StoreError> {
    let premises = all::<DB>(
        conn,
        "SELECT premise_id, role FROM client_premises WHERE client_id = $1 AND source_id = $2 ORDER BY premise_id",
        args![card, scope.source_id],
    )
    .await?
    .iter()
    .map(|row| {
        let role = row.text(1)?;
        Role::parse(&role)
            .map(|r| Ok((row.int(0)?, r)))
            .unwrap_or_else(|| Err(StoreError::Corrupt(format!("role {role:?}"))))
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let accounts = all::<DB>(
        conn,
        "SELECT account_id FROM client_accounts WHERE client_id = $1 AND source_id = $2 ORDER BY account_id",
        args![card, scope.source_id],
    )
    .await?
    .iter()
    .map(|row| row.int(0))
    .collect::<Result<Vec<_>, _>>()?;
    Ok((premises, accounts))
}

/// Sets the card's links from this source to exactly these; other sources' links stay.
async fn replace_links<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    card: i64,
    premises: &[(i64, Role)],
    accounts: &[i64],
) -> Result<(), StoreError> {
    for table in [
        "DELETE FROM client_premises WHERE client_id = $1 AND source_id = $2",
        "DELETE FROM client_accounts WHERE client_id = $1 AND source_id = $2",
    ] {
        execute::<DB>(conn, table, args![card, scope.source_id]).await?;
    }
    for (premise, role) in premises {
        execute::<DB>(
            conn,
            "INSERT INTO client_premises (client_id, premise_id, source_id, role) VALUES ($1, $2, $3, $4)",
            args![card, *premise, scope.source_id, role.as_str()],
        )
        .await?;
    }
    for account in accounts {
        execute::<DB>(
            conn,
            "INSERT INTO client_accounts (client_id, account_id, source_id) VALUES ($1, $2, $3)",
            args![card, *account, scope.source_id],
        )
        .await?;
    }
    Ok(())
}

async fn retire_phone<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    card: i64,
    old: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(old) = old {
        execute::<DB>(
            conn,
            "INSERT INTO phone_history (org_id, client_id, phone, replaced_at, run_id) VALUES ($1, $2, $3, $4, $5)",
            args![scope.org_id, card, old, now().as_str(), scope.run_id],
        )
        .await?;
    }
    Ok(())
}

async fn overwrite<DB: Dialect>(
    conn: &mut DB::Connection,
    card: i64,
    c: &Client,
    phone: Option<&str>,
    current_email: Option<&str>,
) -> Result<(), StoreError> {
    execute::<DB>(
        conn,
        "UPDATE clients SET name = $1, email = $2, phone = $3 WHERE id = $4",
        args![&c.name, new_email(&c.email, current_email), phone, card],
    )
    .await?;
    Ok(())
}

/// Case 2d: the loser's external ids, links and phone history go to the winner; the loser
/// is deleted and remembered in `merges`.
async fn merge<DB: Dialect>(
    conn: &mut DB::Connection,
    scope: &Scope,
    winner: i64,
    loser: i64,
) -> Result<(), StoreError> {
    let loser_ids = one::<DB>(conn, DB::CARD_EXTERNAL_IDS, args![loser])
        .await?
        .text(0)?;
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
        execute::<DB>(conn, sql, args![winner, loser]).await?;
    }
    execute::<DB>(
        conn,
        "INSERT INTO merges (org_id, loser_client_id, winner_client_id, loser_external_ids, run_id, merged_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            scope.org_id,
            loser,
            winner,
            loser_ids.as_str(),
            scope.run_id,
            now().as_str()
        ],
    )
    .await?;
    Ok(())
}
