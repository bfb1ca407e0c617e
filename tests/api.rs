//! The HTTP API: a real server on 127.0.0.1 (the crate's router over a real SQLite file), a
//! real HTTP client. Outcomes are asserted through the answers and through the export.

use std::path::PathBuf;
use std::sync::Arc;

use crm_import::api::{self, Api};
use crm_import::daemon::Daemon;
use crm_import::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

const OTHER: &str = "uo-2";

struct Server {
    base: String,
    db: Db,
    /// Tokens of `uo-1`, of `uo-2`, and of the residents' app.
    uo1: String,
    uo2: String,
    app: String,
    http: reqwest::Client,
}

async fn token(db: &Db, org: Option<&str>) -> String {
    let token = api::new_token();
    db.store
        .create_token(org, "test", &api::token_hash(&token))
        .await
        .unwrap();
    token
}

/// Starts the API over a fresh database, with the demo pipeline of `uo-1` for run-now.
async fn server_with(body_limit: usize, pipelines: Option<PathBuf>) -> Server {
    let db = Db::new().await;
    let store = Arc::new(db.store.clone());
    let mut api = Api::new(store.clone());
    api.body_limit = body_limit;
    if let Some(dir) = pipelines {
        let daemon = Daemon::new(store, &dir, None);
        daemon.reload().unwrap();
        api.daemon = Some(daemon);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api::router(api)).await.unwrap() });
    let uo1 = token(&db, Some(ORG)).await;
    let uo2 = token(&db, Some(OTHER)).await;
    let app = token(&db, None).await;
    Server {
        base: format!("http://{addr}"),
        db,
        uo1,
        uo2,
        app,
        http: reqwest::Client::new(),
    }
}

/// A folder with `uo-1`'s demo pipeline.
fn demo_pipeline() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("demo.toml"),
        format!(
            "name = \"uo-1-demo\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = \"{}\"\nsettle_secs = 0\n",
            testdata("demo.xml")
        ),
    )
    .unwrap();
    dir
}

async fn server() -> Server {
    server_with(api::DEFAULT_BODY_LIMIT, None).await
}

impl Server {
    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn clients(&self, token: &str, clients: Value) -> (StatusCode, Value) {
        self.post(
            "/api/v1/clients",
            token,
            json!({ "source": SRC, "clients": clients }),
        )
        .await
    }
}

fn outcomes(answer: &Value) -> Vec<String> {
    answer["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap().to_owned())
        .collect()
}

fn premises_demo() -> Value {
    json!([
        {"id": "P-1", "address": "Казань, ул. Ленина, д. 1", "number": "1", "kind": "flat", "area": "54,3",
         "accounts": [{"id": "A-1", "number": "1001", "residents": 2}]},
        {"id": "P-2", "address": "Казань, ул. Ленина, д. 1", "number": "2", "area": 61.5,
         "accounts": [{"id": "A-2", "number": "1002"}]}
    ])
}

#[tokio::test]
async fn every_matching_case_answers_with_its_outcome() {
    let s = server().await;
    let (status, answer) = s
        .post(
            "/api/v1/premises",
            &s.uo1,
            json!({"source": SRC, "premises": premises_demo()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcomes"][0]["accounts"], json!(["created"]));
    assert_eq!(outcomes(&answer), vec!["created", "created"]);

    // Case 4 twice, then case 1 (unchanged and updated), case 3, case 2d, case 2a.
    let (status, answer) = s
        .clients(
            &s.uo1,
            json!([
                {"id": "C-1", "name": "Иванов", "phone": "8 (916) 000-00-01",
                 "premises": [{"ref": "P-1", "role": "owner"}], "accounts": ["A-1"]},
                {"id": "C-2", "name": "Петров", "phone": "+7 916 000 00 02"},
                {"id": "C-1", "name": "Иванов", "phone": "89160000001",
                 "premises": [{"ref": "P-1", "role": "owner"}], "accounts": ["A-1"]},
                {"id": "C-1", "name": "Иванов И. И.", "phone": "89160000001",
                 "premises": [{"ref": "P-1", "role": "owner"}], "accounts": ["A-1"]},
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        outcomes(&answer),
        vec!["created", "created", "unchanged", "updated"]
    );
    let (_, answer) = s
        .post(
            "/api/v1/clients",
            &s.uo1,
            json!({"source": "crm2", "clients": [{"id": "X-9", "name": "Петров", "phone": "9160000002"}]}),
        )
        .await;
    assert_eq!(outcomes(&answer), vec!["external_id_added"]);
    let (_, answer) = s
        .clients(
            &s.uo1,
            json!([
                {"id": "C-1", "name": "Иванов", "phone": "+79160000002"},
                {"id": "C-1", "name": "Иванов", "phone": "+79160000003"},
            ]),
        )
        .await;
    assert_eq!(outcomes(&answer), vec!["merged", "updated"]);
    let cards = s.db.of_type(ORG, "client").await;
    assert_eq!(cards.len(), 1, "C-2 was merged into C-1");
    assert_eq!(cards[0]["phone"], "+79160000003");
    assert_eq!(cards[0]["external_ids"].as_array().unwrap().len(), 3);

    // Case 2b: the phone of a card that logged in; 2c: a phone of another organization.
    s.clients(
        &s.uo1,
        json!([{"id": "C-5", "name": "Сидоров", "phone": "+79160000005"}]),
    )
    .await;
    let (status, answer) = s
        .post(
            "/api/v1/logins",
            &s.app,
            json!({"phone": "8 916 000-00-05"}),
        )
        .await;
    assert_eq!(
        (status, answer["marked"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, answer) = s
        .clients(
            &s.uo1,
            json!([{"id": "C-1", "name": "Иванов", "phone": "+79160000005"}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["code"], "phone_taken");
    s.clients(
        &s.uo2,
        json!([{"id": "Z-1", "name": "Чужой", "phone": "+79160000077"}]),
    )
    .await;
    let (status, answer) = s
        .clients(
            &s.uo1,
            json!([{"id": "C-1", "name": "Иванов", "phone": "+79160000077"}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["code"], "phone_in_other_organization");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("зарегистрирован в нескольких организациях")
    );
}

#[tokio::test]
async fn a_batch_halts_at_the_first_error_and_counts_what_was_not_processed() {
    let s = server().await;
    let (status, answer) = s
        .clients(
            &s.uo1,
            json!([
                {"id": "C-1", "name": "Первый", "phone": "+79160000001"},
                {"id": "C-2", "name": "Второй", "phone": "+79160000002", "colour": "red"},
                {"id": "C-3", "name": "Плохой", "phone": "+7 916 12"},
                {"id": "C-4", "name": "Четвёртый", "phone": "+79160000004"},
                {"id": "C-5", "name": "Пятый", "phone": "+79160000005"},
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outcomes(&answer), vec!["created", "created"]);
    let error = &answer["error"];
    assert_eq!(
        (
            &error["code"],
            &error["index"],
            &error["id"],
            &error["field"]
        ),
        (
            &json!("invalid_phone"),
            &json!(3),
            &json!("C-3"),
            &json!("phone")
        )
    );
    assert_eq!(answer["not_processed"], 3);
    assert_eq!(answer["warnings"][0]["code"], "unknown_element");
    let ids: Vec<String> =
        s.db.of_type(ORG, "client")
            .await
            .iter()
            .map(|c| c["external_ids"][0]["id"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(ids, vec!["C-1", "C-2"], "nothing after the error");
    let (_, runs) = s.get("/api/v1/runs", &s.uo1).await;
    assert_eq!(runs["runs"][0]["trigger"], "api");
    assert_eq!(runs["runs"][0]["status"], "error");
}

#[tokio::test]
async fn an_ndjson_push_streams_outcomes_and_ends_with_a_summary_line() {
    let s = server().await;
    let body = "{\"id\":\"C-1\",\"name\":\"Первый\",\"phone\":\"+79160000001\"}\n\n\
                {\"id\":\"C-2\",\"name\":\"Второй\",\"phone\":\"+79160000002\"}\n\
                {not json}\n\
                {\"id\":\"C-4\",\"name\":\"Четвёртый\",\"phone\":\"+79160000004\"}\n";
    let r = s
        .http
        .post(format!("{}/api/v1/clients?source={SRC}", s.base))
        .bearer_auth(&s.uo1)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["outcome"], "created");
    assert_eq!(lines[1]["id"], "C-2");
    let last = &lines[2];
    assert_eq!(last["done"], true);
    assert_eq!(last["error"]["code"], "json_syntax");
    assert_eq!(last["error"]["line"], 4, "the line of the body");
    assert_eq!(last["not_processed"], 2);
    assert_eq!(s.db.of_type(ORG, "client").await.len(), 2);
}

#[tokio::test]
async fn an_xml_upload_goes_through_the_file_pipeline() {
    let s = server().await;
    let r = s
        .http
        .post(format!("{}/api/v1/imports?source={SRC}", s.base))
        .bearer_auth(&s.uo1)
        .header("content-type", "application/xml")
        .body(std::fs::read(testdata("demo.xml")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["report"]["records"], 7);
    assert_eq!(s.db.of_type(ORG, "client").await.len(), 4);
    // Reads, in the export's shapes.
    let (status, found) = s
        .get("/api/v1/clients?phone=8%20(912)%20345-67-89", &s.uo1)
        .await;
    assert_eq!(status, StatusCode::OK);
    let export = s.db.of_type(ORG, "client").await;
    let expected: Vec<&Value> = export
        .iter()
        .filter(|c| c["phone"] == "+79123456789")
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        found["clients"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        expected
    );
    let premise = s.db.of_type(ORG, "premise").await[0].clone();
    let (status, found) = s
        .get(
            &format!(
                "/api/v1/premises/{}/{}",
                premise["source"].as_str().unwrap(),
                premise["id"].as_str().unwrap()
            ),
            &s.uo1,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["premise"], premise);
    let (status, _) = s.get("/api/v1/premises/1c/NOPE", &s.uo1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokens_never_cross_organizations() {
    let dir = demo_pipeline();
    let s = server_with(api::DEFAULT_BODY_LIMIT, Some(dir.path().to_path_buf())).await;
    let r = s
        .http
        .post(format!("{}/api/v1/imports?source={SRC}", s.base))
        .bearer_auth(&s.uo1)
        .header("content-type", "application/xml")
        .body(std::fs::read(testdata("demo.xml")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, runs) = s.get("/api/v1/runs", &s.uo1).await;
    let run_id = runs["runs"][0]["id"].as_i64().unwrap();
    let client = s.db.of_type(ORG, "client").await[0].clone();
    let phone = client["phone"].as_str().unwrap().to_owned();
    let ext = client["external_ids"][0]["id"].as_str().unwrap().to_owned();
    let premise = s.db.of_type(ORG, "premise").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = s.db.export(ORG).await;

    // uo-2 reads nothing of uo-1 …
    for path in [
        format!("/api/v1/clients?phone={}", phone.replace('+', "%2B")),
        format!("/api/v1/clients?source={SRC}&external_id={ext}"),
    ] {
        let (status, answer) = s.get(&path, &s.uo2).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(answer["clients"], json!([]), "{path}");
    }
    for path in [
        format!("/api/v1/premises/{SRC}/{premise}"),
        format!("/api/v1/runs/{run_id}"),
    ] {
        let (status, answer) = s.get(&path, &s.uo2).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (_, runs) = s.get("/api/v1/runs", &s.uo2).await;
    assert_eq!(runs["runs"], json!([]));
    let (_, pipelines) = s.get("/api/v1/pipelines", &s.uo2).await;
    assert_eq!(pipelines["pipelines"], json!([]));
    let (status, _) = s
        .post("/api/v1/pipelines/uo-1-demo/run", &s.uo2, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // … and its writes land in uo-2 only, even with uo-1's ids.
    let (status, _) = s
        .clients(
            &s.uo2,
            json!([{"id": ext, "name": "Чужой", "phone": "+79169990000"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.db.export(ORG).await, before, "uo-1 untouched");
    assert_eq!(s.db.of_type(OTHER, "client").await.len(), 1);

    // The app token only reports logins; org tokens cannot.
    let (status, _) = s.get("/api/v1/runs", &s.app).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post("/api/v1/logins", &s.uo2, json!({"phone": phone}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Run-now for the owner: 202, then 409 while it runs or refused later, never twice.
    let (status, answer) = s
        .post("/api/v1/pipelines/uo-1-demo/run", &s.uo1, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let started = answer["run_id"].as_i64().unwrap();
    let mut finished = Value::Null;
    for _ in 0..100 {
        let (_, run) = s.get(&format!("/api/v1/runs/{started}"), &s.uo1).await;
        if run["run"]["status"] != "running" {
            finished = run;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(finished["run"]["status"], "ok", "{finished}");
    assert_eq!(finished["run"]["trigger"], "api");
    assert_eq!(finished["report"]["counts"]["client"]["unchanged"], 4);
}

#[tokio::test]
async fn run_now_of_a_running_pipeline_is_409() {
    let dir = demo_pipeline();
    let s = server_with(api::DEFAULT_BODY_LIMIT, Some(dir.path().to_path_buf())).await;
    // Another process holds the pipeline: its lease is in the database.
    let scope = s.db.store.scope(ORG, SRC).await.unwrap();
    let held =
        s.db.store
            .start_run(
                scope.org_id,
                Some("uo-1-demo"),
                crm_import::store::Trigger::Schedule,
            )
            .await
            .unwrap();
    assert!(matches!(held, crm_import::store::RunStart::Started(_)));
    let (status, answer) = s
        .post("/api/v1/pipelines/uo-1-demo/run", &s.uo1, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "already_running");
    let (_, runs) = s.get("/api/v1/runs?pipeline=uo-1-demo", &s.uo1).await;
    assert_eq!(
        runs["runs"][0]["status"], "refused",
        "the refusal is recorded"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let s = server_with(1024, None).await;
    let url = format!("{}/api/v1/clients", s.base);
    // No token, an unknown token, a revoked token.
    let r = s
        .http
        .get(format!("{}/api/v1/runs", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "missing_token");
    let (status, answer) = s.get("/api/v1/runs", "crm_nope").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_token"))
    );
    let revoked = token(&s.db, Some(ORG)).await;
    let id = s.db.store.tokens().await.unwrap().last().unwrap().id;
    assert!(s.db.store.revoke_token(id).await.unwrap());
    let (status, _) = s.get("/api/v1/runs", &revoked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Malformed JSON: 400 with the position.
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.uo1)
        .header("content-type", "application/json")
        .body("{\"source\": \"1c\",\n \"clients\": [oops]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (&answer["error"]["code"], &answer["error"]["line"]),
        (&json!("bad_json"), &json!(2))
    );
    // Wrong content type: 415.
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.uo1)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Over the limit: 413, with the hint to stream.
    let big: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("C-{i}"), "name": "Иванов Иван Иванович"}))
        .collect();
    let (status, answer) = s.clients(&s.uo1, json!(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NDJSON")
    );
    assert!(s.db.of_type(ORG, "client").await.is_empty());
}

#[tokio::test]
async fn openapi_describes_exactly_the_served_routes() {
    let s = server().await;
    let r = s
        .http
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut served: Vec<&str> = api::PATHS.to_vec();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    // Every documented operation exists on the router: without a token it is 401, not 404/405.
    for (path, ops) in paths {
        let concrete = path
            .replace("{source}", "1c")
            .replace("{id}", "1")
            .replace("{name}", "x");
        for method in ops.as_object().unwrap().keys() {
            let url = format!("{}{concrete}", s.base);
            let request = match method.as_str() {
                "get" => s.http.get(url),
                "post" => s.http.post(url),
                "put" => s.http.put(url),
                "delete" => s.http.delete(url),
                other => panic!("undocumented method {other}"),
            };
            let status = request.send().await.unwrap().status();
            let public = ops[method].get("security").is_none();
            if public {
                assert!(
                    status == StatusCode::OK
                        || status == StatusCode::NOT_FOUND && path == "/metrics",
                    "{method} {path}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
}

/// A pushed id obeys the field limit as a file's does.
#[tokio::test]
async fn a_pushed_id_longer_than_a_field_may_be_is_refused() {
    let s = server().await;
    let long = "C".repeat(5000);
    let (status, answer) = s
        .clients(
            &s.uo1,
            json!([{"id": long, "name": "Иванов", "phone": "+79161234567"}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "field_too_long", "{answer}");
    assert!(answer["error"]["id"].as_str().unwrap().len() < 100);
    assert!(s.db.of_type(ORG, "client").await.is_empty());
}

/// Every error answer is the documented JSON: an unreadable id or query, an unknown route,
/// a method a route does not serve, an address too long.
#[tokio::test]
async fn every_error_answer_is_the_documented_json() {
    let s = server().await;
    let long = format!("/api/v1/runs?pipeline={}", "x".repeat(20_000));
    let cases = [
        (
            reqwest::Method::GET,
            long.as_str(),
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/runs/abc",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/runs?limit=abc",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/nothing-here",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/runs",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let r = s
            .http
            .request(method.clone(), format!("{}{path}", s.base))
            .bearer_auth(&s.uo1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

/// The results download's CSV lines, after its BOM.
fn csv_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.starts_with('\u{feff}'), "a BOM for Excel");
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_run_keeps_its_results_for_download_naming_the_card_merged_into() {
    use std::io::Read;
    let s = server().await;
    s.post(
        "/api/v1/premises",
        &s.uo1,
        json!({"source": SRC, "premises": premises_demo()}),
    )
    .await;
    s.clients(
        &s.uo1,
        json!([
            {"id": "C-1", "name": "Иванов", "phone": "+79160000001"},
            {"id": "C-2", "name": "Петров", "phone": "+79160000002"},
        ]),
    )
    .await;
    let (_, answer) = s
        .clients(
            &s.uo1,
            json!([
                {"id": "C-1", "name": "Иванов", "phone": "+79160000002"},
                {"id": "C-3", "name": "Сидоров", "phone": "не знаю"},
                {"id": "C-4", "name": "Козлов"},
            ]),
        )
        .await;
    assert_eq!(outcomes(&answer), vec!["merged"]);
    let run = answer["run_id"].as_i64().unwrap();
    let url = format!("{}/api/v1/runs/{run}/results", s.base);

    // A client that takes no gzip gets the CSV itself.
    let r = s.http.get(&url).bearer_auth(&s.uo1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers().get("content-encoding").is_none());
    let plain = r.bytes().await.unwrap();
    let lines = csv_lines(&plain);
    assert_eq!(
        lines[0],
        "file;index;line;kind;id;outcome;merged_into;code;message;count"
    );
    let merged: Vec<&str> = lines[1].split(';').collect();
    assert_eq!(merged[3..6], ["client", "C-1", "merged"], "{}", lines[1]);
    let cards = s.db.of_type(ORG, "client").await;
    assert_eq!(cards.len(), 1, "one card is left of C-1's and C-2's");
    assert_eq!(
        [merged[6], merged[8]],
        ["1", "card 2 was merged into card 1"],
        "C-2's card (2), whose phone the record brought, went into C-1's (1): {}",
        lines[1]
    );
    assert!(
        lines[2].contains(";client;C-3;error;;invalid_phone;"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with(";;;;;not_processed;;;") && lines[3].ends_with(";1"),
        "C-4 was not processed: {}",
        lines[3]
    );
    assert_eq!(lines.len(), 4);

    // A browser gets the same bytes gzip-encoded.
    let r = s
        .http
        .get(&url)
        .bearer_auth(&s.uo1)
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);

    // Another organization's token does not see it; an unknown run is not found either.
    let (status, answer) = s.get(&format!("/api/v1/runs/{run}/results"), &s.uo2).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = s.get("/api/v1/runs/999/results", &s.uo1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
