//! The console in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs) against a real server on
//! 127.0.0.1. A person's path: sign in, find the pipeline, press «Запустить сейчас», read
//! the run's report. With `CRM_SCREENSHOTS=1` the pages it passes are saved as the README's
//! screenshots (`docs/console-*.png`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::*;
use crate::console::console;
use crm_import::store::Store;

/// chromedriver on a free port of 127.0.0.1, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The driver and a headless browser session; `None` (with a loud note) where Chromium is
/// not installed outside CI. Under CI a missing browser fails the test.
async fn browser() -> Option<(Driver, Client)> {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMEDRIVER} is missing: .ci/run installs chromium and chromium-driver"
        );
        eprintln!("!!! {CHROMEDRIVER} is missing: the browser test was SKIPPED !!!");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    for _ in 0..100 {
        let connected = ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await;
        if let Ok(client) = connected {
            // The profile lives as long as the test.
            std::mem::forget(profile);
            return Some((driver, client));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

/// Takes a screenshot of what the browser shows; saves it as a README screenshot when
/// `CRM_SCREENSHOTS` is set.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if std::env::var_os("CRM_SCREENSHOTS").is_none() {
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(format!("console-{name}.png"));
    std::fs::write(path, png).unwrap();
}

#[tokio::test]
async fn staff_sign_in_run_a_pipeline_now_and_read_its_report_in_a_browser() {
    let c = console().await;
    let Some((_driver, b)) = browser().await else {
        return;
    };
    b.goto(&format!("{}/", c.base)).await.unwrap();
    // Not signed in: the sign-in form, by its labels.
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//label[text()='Логин']"))
        .await
        .unwrap();
    fill_sign_in(&b, "ivanova").await;

    // The pipelines list: ours only, the schedule in words.
    let link = b
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("uo-1-demo"))
        .await
        .unwrap();
    let list = b.source().await.unwrap();
    assert!(list.contains("каждый день в 03:00"), "{list}");
    assert!(!list.contains("uo-2-demo"));
    screenshot(&b, "pipelines").await;

    link.click().await.unwrap();
    let run_now = b
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//button[text()='Запустить сейчас']"))
        .await
        .unwrap();
    run_now.click().await.unwrap();

    // The run's page: OK with the counts, once the run has ended (the page reloads itself).
    b.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//span[@id='status' and text()='OK']"))
        .await
        .unwrap();
    let premises = b
        .find(Locator::XPath("//tr[th='Помещения']/td[1]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(premises, "3");
    screenshot(&b, "run").await;
    assert_eq!(c.db.of_type(ORG, "premise").await.len(), 3);

    // A new pipeline in the settings form: a wrong hour is shown at the schedule, then saved.
    b.goto(&format!("{}/", c.base)).await.unwrap();
    b.find(Locator::LinkText("Добавить"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let fill = |label: &'static str, text: String| {
        let b = b.clone();
        async move {
            let xpath = format!("//input[@id=//label[normalize-space(text())='{label}']/@for]");
            let input = b.find(Locator::XPath(&xpath)).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(&text).await.unwrap();
        }
    };
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//button[text()='Сохранить']"))
        .await
        .unwrap();
    fill("Название", "Ночная выгрузка".into()).await;
    fill("Источник", SRC.into()).await;
    fill("Адрес файла(ов)", testdata("demo.xml")).await;
    fill("Часы", "27".into()).await;
    b.find(Locator::XPath("//button[text()='Сохранить']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("schedule-error"))
        .await
        .unwrap();
    assert!(c.db.store.stored_pipelines().await.unwrap().is_empty());
    fill("Часы", "3".into()).await;
    screenshot(&b, "form").await;
    b.find(Locator::XPath("//button[text()='Сохранить']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//button[text()='Запустить сейчас']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//span[@id='status' and text()='OK']"))
        .await
        .unwrap();
    assert_eq!(c.db.store.stored_pipelines().await.unwrap().len(), 1);
    b.close().await.unwrap();
}

/// Fills in the sign-in form shown and presses «Войти».
async fn fill_sign_in(b: &Client, login: &str) {
    for (id, text) in [("login", login), ("password", "пароль-для-теста")] {
        b.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    click(b, "//button[text()='Войти']").await;
}

/// Signs in through the form.
async fn sign_in(b: &Client, base: &str, login: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    fill_sign_in(b, login).await;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("Добавить"))
        .await
        .unwrap();
}

/// The text of the element `css` selects, once it appears (within `secs` seconds).
async fn text_of(b: &Client, css: &str, secs: u64) -> String {
    b.wait()
        .at_most(Duration::from_secs(secs))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn click(b: &Client, xpath: &str) {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The FTP connection checked from the form (the password typed never comes back), a
/// failing file's run with its error and line, a form whose CSRF token was removed, and
/// another organization's pages — in the browser.
#[tokio::test]
async fn the_connection_check_errors_csrf_and_other_organizations_in_a_browser() {
    use crate::ftp_source::{PASSWORD as FTP_PASSWORD, Server, ServerOptions, USER};
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", "<crm-import/>");
    let c = console().await;
    let Some((_driver, b)) = browser().await else {
        return;
    };
    sign_in(&b, &c.base, "ivanova").await;

    // «Проверить соединение» with the typed password: what the address finds.
    b.goto(&format!("{}/pipelines/new", c.base)).await.unwrap();
    let port = server.port.to_string();
    for (id, text) in [
        ("name", "ftp-nightly"),
        ("source", SRC),
        ("files", "/exports/*.xml"),
        ("ftp_host", "127.0.0.1"),
        ("ftp_port", port.as_str()),
        ("ftp_user", USER),
        ("ftp_password", FTP_PASSWORD),
    ] {
        let input = b.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }
    click(&b, "//button[text()='Проверить соединение']").await;
    let result = text_of(&b, ".check-result", 20).await;
    assert!(result.contains("найдено /exports/a.xml"), "{result}");
    assert!(!b.source().await.unwrap().contains(FTP_PASSWORD));

    // A failing file's run shows its error with the file and the line.
    b.goto(&format!("{}/pipelines/uo-1-broken", c.base))
        .await
        .unwrap();
    click(&b, "//button[text()='Запустить сейчас']").await;
    let error = text_of(&b, "section.error", 30).await;
    assert!(error.contains("invalid_phone.xml"), "{error}");
    assert!(
        error.contains("Строка\n20") || error.contains("Строка 20"),
        "{error}"
    );

    // A form whose CSRF token is gone is refused, and nothing runs.
    b.goto(&format!("{}/pipelines/uo-1-demo", c.base))
        .await
        .unwrap();
    b.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
        vec![],
    )
    .await
    .unwrap();
    click(&b, "//button[text()='Запустить сейчас']").await;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//h1[text()='Запрос отклонён']"))
        .await
        .unwrap();
    let demo_runs =
        c.db.store
            .runs(&crm_import::store::RunFilter {
                pipeline: Some("uo-1-demo".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
    assert!(demo_runs.is_empty(), "{demo_runs:?}");

    // Another organization's user: not its pipelines, not its runs.
    b.delete_all_cookies().await.unwrap();
    sign_in(&b, &c.base, "petrov").await;
    let list = b.source().await.unwrap();
    assert!(
        !list.contains("uo-1-demo") && !list.contains("ftp-nightly"),
        "{list}"
    );
    for path in ["/pipelines/uo-1-demo", "/runs/1"] {
        b.goto(&format!("{}{path}", c.base)).await.unwrap();
        b.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath("//h1[text()='Не найдено']"))
            .await
            .unwrap();
    }
    b.close().await.unwrap();
}
