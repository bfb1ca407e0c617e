//! Pipelines through the API: the console's pipelines created, read, changed, checked and
//! deleted with a token, over a real server and database; a file's pipeline read-only;
//! another organization's not found.

use crm_import::api;
use crm_import::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use crate::console::console;

async fn token(db: &Db, org: &str) -> String {
    let token = api::new_token();
    db.store
        .create_token(Some(org), "test", &api::token_hash(&token))
        .await
        .unwrap();
    token
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn pipelines_are_created_read_changed_and_deleted_through_the_api() {
    use reqwest::Method;
    let c = console().await;
    let (ours, theirs) = (token(&c.db, ORG).await, token(&c.db, "uo-2").await);
    let url = |path: &str| format!("{}/api/v1/pipelines{path}", c.base);
    let nightly = json!({
        "name": "api-nightly", "source": SRC, "files": [testdata("demo.xml")],
        "schedule": "0 3 * * *", "timezone": "Europe/Moscow", "notify": ["ops@uo-1.ru"]
    });
    let (status, created) = call(Method::POST, url(""), &ours, Some(nightly.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["pipeline"]["editable"], true);
    assert_eq!(created["pipeline"]["schedule"], "0 3 * * *");

    let (_, list) = call(Method::GET, url(""), &ours, None).await;
    let listed: Vec<(String, bool)> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["editable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&("api-nightly".into(), true)), "{list}");
    assert!(listed.contains(&("uo-1-demo".into(), false)), "{list}");

    // Mistakes come back by key; nothing is saved.
    let mut bad = nightly.clone();
    bad["name"] = json!("api-bad");
    bad["schedule"] = json!("0 25 * * *");
    bad["timezone"] = json!("Mars/Olympus");
    let (status, answer) = call(Method::POST, url(""), &ours, Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_pipeline");
    assert!(
        answer["error"]["fields"]["schedule"].is_string(),
        "{answer}"
    );
    assert!(
        answer["error"]["fields"]["timezone"].is_string(),
        "{answer}"
    );
    let (status, _) = call(Method::GET, url("/api-bad"), &ours, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut changed = nightly.clone();
    changed["schedule"] = json!("30 4 * * *");
    changed["mode"] = json!("snapshot");
    changed["max_archive_percent"] = json!(20);
    changed["min_records"] = json!(5);
    changed["layout"] = json!("layouts/1c.toml");
    let (status, answer) = call(Method::PUT, url("/api-nightly"), &ours, Some(changed)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, read) = call(Method::GET, url("/api-nightly"), &ours, None).await;
    assert_eq!(read["pipeline"]["schedule"], "30 4 * * *", "{read}");
    assert_eq!(read["pipeline"]["mode"], "snapshot", "{read}");
    assert_eq!(read["pipeline"]["max_archive_percent"], 20);
    assert_eq!(read["pipeline"]["min_records"], 5);
    assert_eq!(read["pipeline"]["settle_secs"], 5);
    assert_eq!(read["pipeline"]["layout"], "layouts/1c.toml", "{read}");

    // A file's pipeline is read-only; another organization sees nothing.
    let (status, answer) = call(Method::PUT, url("/uo-1-demo"), &ours, Some(nightly.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "defined_by_file");
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = call(method, url("/api-nightly"), &theirs, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = call(Method::PUT, url("/api-nightly"), &theirs, Some(nightly)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // It runs like any pipeline.
    let (status, answer) = call(
        Method::POST,
        url("/api-nightly/run"),
        &ours,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    let (status, _) = call(Method::DELETE, url("/api-nightly"), &ours, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(Method::GET, url("/api-nightly"), &ours, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_api_checks_a_pipelines_ftp_connection_and_never_returns_its_password() {
    use crate::ftp_source::{PASSWORD as FTP_PASSWORD, Server, ServerOptions, USER};
    use reqwest::Method;
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", "<crm-import/>");
    let c = console().await;
    let ours = token(&c.db, ORG).await;
    let url = |path: &str| format!("{}/api/v1/pipelines{path}", c.base);
    let body = json!({
        "name": "ftp-nightly", "source": SRC, "files": ["/exports/*.xml"],
        "ftp": { "host": "127.0.0.1", "port": server.port, "user": USER, "password": FTP_PASSWORD }
    });
    let (status, created) = call(Method::POST, url(""), &ours, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, read) = call(Method::GET, url("/ftp-nightly"), &ours, None).await;
    assert_eq!(read["pipeline"]["ftp"]["password_set"], true, "{read}");
    for answer in [&created, &read] {
        assert!(!answer.to_string().contains(FTP_PASSWORD), "{answer}");
    }
    let (status, check) = call(Method::POST, url("/ftp-nightly/check"), &ours, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["addresses"][0]["found"], json!(["/exports/a.xml"]));
    let stored = c.db.store.stored_pipelines().await.unwrap();
    assert!(!stored[0].definition.contains(FTP_PASSWORD));
}
