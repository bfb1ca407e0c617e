//! HTTP(S) links: a real HTTP server on 127.0.0.1, a real client.

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::{StreamExt, stream};

use crate::common::*;

/// Serves the routes on a free loopback port; returns the base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn demo() -> Vec<u8> {
    std::fs::read(testdata("demo.xml")).unwrap()
}

fn xml(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn router() -> Router {
    Router::new()
        .route("/export.xml", get(|| async { xml(demo()) }))
        .route(
            "/moved.xml",
            get(|| async { Redirect::temporary("/export.xml") }),
        )
        .route(
            "/share/offers.xml",
            get(|| async {
                let page = std::fs::read(testdata("defects/html_page.xml")).unwrap();
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
            }),
        )
        .route(
            "/cut.xml",
            get(|| async {
                // The first two thirds of a file, then the connection breaks.
                let bytes = clients(1, 300).into_bytes();
                let cut = bytes[..bytes.len() * 2 / 3].to_vec();
                // The data goes out first; a moment later the transfer breaks.
                let body = stream::once(async { Ok::<_, std::io::Error>(cut) }).chain(
                    stream::once(async {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        Err(std::io::Error::other("connection reset"))
                    }),
                );
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/xml")
                    .body(Body::from_stream(body))
                    .unwrap()
            }),
        )
        .route("/private.xml", get(|| async { StatusCode::FORBIDDEN }))
}

#[tokio::test]
async fn a_direct_link_is_streamed_into_the_database() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/export.xml")], 1000)
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.records, 7);
    assert_eq!(db.of_type(ORG, "client").await.len(), 4);
}

#[tokio::test]
async fn redirects_are_followed() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/moved.xml")], 1000)
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.records, 7);
}

#[tokio::test]
async fn a_missing_file_says_there_is_no_file_at_this_link() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/nope.xml")], 1000)
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "not_found");
    assert!(
        error.message.contains("no file at this link"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_refused_link_names_the_status() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/private.xml")], 1000)
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "http_status");
    assert!(error.message.contains("HTTP 403"), "{}", error.message);
}

#[tokio::test]
async fn a_share_page_instead_of_the_file_suggests_a_direct_link() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/share/offers.xml")], 1000)
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "html_instead_of_xml");
    assert!(error.message.contains("?dl=1"), "{}", error.message);
}

#[tokio::test]
async fn a_body_cut_short_keeps_the_records_before_the_cut() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[format!("{base}/cut.xml")], 50)
        .await;
    let error = report.error.as_ref().unwrap();
    assert!(
        matches!(error.code.as_str(), "source_unreadable" | "truncated"),
        "{error:?}"
    );
    // It says how much arrived before the connection closed.
    let arrived = clients(1, 300).len() * 2 / 3;
    assert!(
        error
            .message
            .contains(&format!("the connection closed after {arrived} bytes")),
        "{}",
        error.message
    );
    let kept = db.of_type(ORG, "client").await.len();
    assert!(kept > 100 && kept < 300, "{kept} clients kept");
    assert_eq!(kept as u64, report.records);
}

#[tokio::test]
async fn several_addresses_stop_at_the_first_that_fails() {
    let base = serve(router()).await;
    let db = Db::new().await;
    let later = db.file(&doc("", &client("C-9", "Позже", Some("+79160000009"), "")));
    let files = [
        format!("{base}/export.xml"),
        format!("{base}/nope.xml"),
        later,
    ];
    let report = db.import_files(ORG, SRC, &files, 1000).await;
    assert_eq!(error_code(&report).as_deref(), Some("not_found"));
    assert_eq!(report.records, 7, "the first file stays committed");
    assert!(
        db.client(ORG, SRC, "C-9").await.is_none(),
        "the third file is untouched"
    );
}

#[tokio::test]
async fn a_stalled_download_leaves_what_arrived_committed() {
    // 100 clients arrive, then the server waits until the test has seen them in the
    // database: an import must not keep them in an open transaction (holding the writer
    // from the API and lease renewals) while its input stalls.
    let full = clients(1, 200);
    let cut = full.find("<client id=\"C-101\">").unwrap();
    let (first, rest) = (full[..cut].to_owned(), full[cut..].to_owned());
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let released = go.clone();
    let router = Router::new().route(
        "/slow.xml",
        get(move || {
            let (first, rest, released) = (first.clone(), rest.clone(), released.clone());
            async move {
                let body = stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
                    stream::once(async move {
                        released.notified().await;
                        Ok(rest)
                    }),
                );
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/xml")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
        }),
    );
    let base = serve(router).await;
    let db = Db::new().await;
    let watch = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen = loop {
            let n = db.of_type(ORG, "client").await.len();
            if n >= 100 || std::time::Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        go.notify_one();
        seen
    };
    let files = [format!("{base}/slow.xml")];
    let (report, seen) = tokio::join!(db.import_files(ORG, SRC, &files, 50), watch);
    assert_eq!(seen, 100, "clients committed while the download stalled");
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(db.of_type(ORG, "client").await.len(), 200);
}
