//! `token`, `runs` and `login`: looking after the database's tokens, history and cards.

use std::io::IsTerminal;

use super::args::{Db, TokenCommand, UserCommand};
use super::open_store;
use super::output::{Failure, say};
use crate::store::{RunFilter, Store};
use crate::{api, console, phone};

/// `token create|list|revoke`.
pub async fn token(command: TokenCommand, db: &Db) -> Result<(), Failure> {
    let store = open_store(db).await?;
    match command {
        TokenCommand::Create { org, app: _, name } => {
            let token = api::new_token();
            let row = store
                .create_token(org.as_deref(), &name, &api::token_hash(&token))
                .await?;
            let whom = row.organization.as_deref().unwrap_or("the residents' app");
            say(&format!(
                "{token}\ntoken {} ({name}) for {whom}: shown once, keep it secret; only its hash is stored\n",
                row.id
            ));
        }
        TokenCommand::List => {
            let mut out = String::from("id\torganization\tname\tcreated\trevoked\n");
            for r in store.tokens().await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    r.id,
                    r.organization.as_deref().unwrap_or("(app)"),
                    r.name,
                    r.created_at,
                    r.revoked_at.as_deref().unwrap_or("-")
                ));
            }
            say(&out);
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(id).await? {
                return Err(Failure::config(format!("there is no live token {id}")));
            }
            say(&format!("token {id} revoked\n"));
        }
    }
    Ok(())
}

/// `user add|list|remove`: the console's staff accounts.
pub async fn user(command: UserCommand, db: &Db) -> Result<(), Failure> {
    let store = open_store(db).await?;
    match command {
        UserCommand::Add { org, login } => {
            let login = login.trim();
            if login.is_empty() {
                return Err(Failure::config("--login must not be empty"));
            }
            let password = new_password()?;
            let hash = console::hash_password(&password).map_err(Failure::import)?;
            let Some(row) = store.create_user(&org, login, &hash).await? else {
                return Err(Failure::config(format!(
                    "the login {login:?} is taken: choose another, or remove that account first"
                )));
            };
            say(&format!(
                "user {} ({}) added to {}; the password is stored as an Argon2id hash\n",
                row.login, row.id, row.organization
            ));
        }
        UserCommand::List => {
            let mut out = String::from("id\torganization\tlogin\tcreated\n");
            for u in store.users().await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    u.id, u.organization, u.login, u.created_at
                ));
            }
            say(&out);
        }
        UserCommand::Remove { login } => {
            if !store.remove_user(&login).await? {
                return Err(Failure::config(format!("there is no user {login:?}")));
            }
            say(&format!(
                "user {login} removed; their sessions have ended\n"
            ));
        }
    }
    Ok(())
}

/// The new account's password: typed twice at a prompt, or `CRM_USER_PASSWORD` when
/// standard input is not a terminal.
fn new_password() -> Result<String, Failure> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Пароль: ")
            .map_err(|e| Failure::config(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Пароль ещё раз: ")
            .map_err(|e| Failure::config(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(Failure::config(
                "the two passwords differ; nothing was added",
            ));
        }
        first
    } else {
        std::env::var("CRM_USER_PASSWORD").map_err(|_| {
            Failure::config(
                "not on a terminal: put the password in CRM_USER_PASSWORD (nothing was added)",
            )
        })?
    };
    if password.chars().count() < 8 {
        return Err(Failure::config(
            "the password is shorter than 8 characters; nothing was added",
        ));
    }
    Ok(password)
}

/// `runs`: the history, newest first.
pub async fn list_runs(filter: &RunFilter, db: &Db) -> Result<(), Failure> {
    let store = open_store(db).await?;
    let mut out = String::from("id\tstarted\tfinished\tpipeline\ttrigger\tstatus\trecords\tmail\n");
    for r in store.runs(filter).await? {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.id,
            r.started_at,
            r.finished_at.as_deref().unwrap_or("-"),
            r.pipeline.as_deref().unwrap_or("(import)"),
            r.trigger,
            r.status,
            r.records,
            r.mail.as_deref().unwrap_or("-")
        ));
    }
    say(&out);
    Ok(())
}

/// `runs show ID`: one run with its JSON report.
pub async fn show_run(id: i64, db: &Db) -> Result<(), Failure> {
    let store = open_store(db).await?;
    let Some((row, report)) = store.run(id, None).await? else {
        return Err(Failure::config(format!("there is no run {id}")));
    };
    let report: serde_json::Value = report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(serde_json::Value::Null);
    let shown = serde_json::json!({ "run": row, "report": report });
    say(&format!("{shown:#}\n"));
    Ok(())
}

/// `login PHONE`: marks the phone's cards as logged in.
pub async fn login(raw: &str, db: &Db) -> Result<(), Failure> {
    let Some(phone) = phone::normalize(raw) else {
        return Err(Failure::config(format!(
            "{raw:?} is not a valid phone number [invalid_phone]"
        )));
    };
    let store = open_store(db).await?;
    let n = store.mark_logged_in(&phone).await?;
    say(&format!("{phone}: {n} card(s) marked as logged in\n"));
    Ok(())
}
