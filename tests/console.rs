//! The web console over HTTP: a real server on 127.0.0.1 (the API's and the console's
//! routes over a real database, pipelines from a folder), a real HTTP client that keeps the
//! session cookie by hand. What a page shows is asserted in its HTML; what a run did,
//! through the export.

use std::sync::Arc;

use crm_import::api::{self, Api};
use crm_import::console;
use crm_import::daemon::Daemon;
use crm_import::secret::SecretKey;
use crm_import::store::Store;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::common::*;

const OTHER: &str = "uo-2";
const PASSWORD: &str = "пароль-для-теста";
/// The console's `CRM_SECRET_KEY` in these tests.
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub struct Console {
    pub base: String,
    pub db: Db,
    http: reqwest::Client,
    _pipelines: tempfile::TempDir,
}

/// A pipeline file of `org` named `name` that imports `file`.
fn pipeline_file(dir: &std::path::Path, name: &str, org: &str, file: &str) {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\norganization = \"{org}\"\nsource = \"{SRC}\"\nfiles = \"{file}\"\nsettle_secs = 0\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"\n"
        ),
    )
    .unwrap();
}

/// The API and the console over a fresh database, with pipelines of `uo-1` (the demo
/// export, and a file whose second client has an invalid phone) and one of `uo-2`, and a
/// user of each organization.
pub async fn console() -> Console {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    pipeline_file(dir.path(), "uo-1-demo", ORG, &testdata("demo.xml"));
    pipeline_file(
        dir.path(),
        "uo-1-broken",
        ORG,
        &testdata("defects/invalid_phone.xml"),
    );
    pipeline_file(dir.path(), "uo-2-demo", OTHER, &testdata("demo.xml"));
    let store = Arc::new(db.store.clone());
    let mut api = Api::new(store.clone());
    let daemon = Daemon::new(store, dir.path(), None);
    assert!(daemon.reload().unwrap().is_empty());
    daemon.set_secret_key(SecretKey::from_base64(SECRET_KEY).unwrap());
    api.daemon = Some(daemon);
    let api = Arc::new(api);
    let app = api::routes(api.clone()).merge(console::router(api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for (org, login) in [(ORG, "ivanova"), (OTHER, "petrov")] {
        let hash = console::hash_password(PASSWORD).unwrap();
        db.store
            .create_user(org, login, &hash)
            .await
            .unwrap()
            .unwrap();
    }
    Console {
        base: format!("http://{addr}"),
        db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _pipelines: dir,
    }
}

/// A form's answer: its status, where it redirects to (if it does) and its page.
async fn answer(r: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = r.status();
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, r.text().await.unwrap())
}

/// A signed-in browser, as far as HTTP goes: its session cookie and its CSRF token.
pub struct Session {
    cookie: String,
    pub csrf: String,
}

impl Console {
    pub async fn sign_in(&self, login: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.base))
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    pub async fn session(&self, login: &str) -> Session {
        let r = self.sign_in(login, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut session = Session {
            cookie,
            csrf: String::new(),
        };
        let (_, home) = self.get(&session, "/").await;
        session.csrf = home
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        session
    }

    pub async fn get(&self, session: &Session, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &session.cookie)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.text().await.unwrap())
    }

    /// Posts a form; the status and where it redirects to, if it does.
    pub async fn post(
        &self,
        session: &Session,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &session.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// Presses «Запустить сейчас» and waits for the run's page to show its end.
    pub async fn run_now(&self, session: &Session, pipeline: &str) -> (String, String) {
        let (status, location, body) = self
            .post(
                session,
                &format!("/pipelines/{pipeline}/run"),
                &[("csrf", &session.csrf)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let location = location.unwrap();
        for _ in 0..200 {
            let (status, page) = self.get(session, &location).await;
            assert_eq!(status, StatusCode::OK);
            if !page.contains("Выполняется") {
                return (location, page);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the run at {location} did not end");
    }
}

#[tokio::test]
async fn a_signed_in_user_runs_a_pipeline_now_and_reads_its_report() {
    let c = console().await;
    let r = c.sign_in("ivanova", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let s = c.session("ivanova").await;

    let (status, home) = c.get(&s, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("uo-1-demo"), "{home}");
    assert!(home.contains("каждый день в 03:00"), "{home}");
    assert!(
        !home.contains("uo-2-demo"),
        "another organization's pipeline is listed"
    );

    let (status, page) = c.get(&s, "/pipelines/uo-1-demo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Задан файлом"), "{page}");
    assert!(page.contains("Запустить сейчас"));
    assert!(page.contains("не ждать, пока файл допишется"), "{page}");

    let (location, run) = c.run_now(&s, "uo-1-demo").await;
    assert!(run.contains(">OK<"), "{run}");
    assert!(run.contains("вручную"));
    // The demo export: 3 premises, 3 accounts, 4 clients created.
    assert!(run.contains("<th>Помещения</th><td>3</td>"), "{run}");
    assert!(run.contains("<th>Клиенты</th><td>4</td>"), "{run}");
    assert_eq!(c.db.of_type(ORG, "client").await.len(), 4);

    // The pipeline's history lists the run with its status.
    let (_, page) = c.get(&s, "/pipelines/uo-1-demo").await;
    assert!(page.contains(&format!("href=\"{location}\"")), "{page}");

    // Its results, a line per record, download from the run's page.
    assert!(
        run.contains(&format!("href=\"{location}/results\"")),
        "{run}"
    );
    let (status, csv) = c.get(&s, &format!("{location}/results")).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines.len(),
        1 + 7 + 1,
        "a header, 7 records, the closing line: {csv}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains(";created;")).count(),
        7,
        "{csv}"
    );
}

#[tokio::test]
async fn a_failing_files_run_shows_its_error_with_file_and_line() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let (_, run) = c.run_now(&s, "uo-1-broken").await;
    assert!(run.contains("Ошибка"), "{run}");
    assert!(run.contains("invalid_phone.xml"), "{run}");
    assert!(run.contains("<dt>Строка</dt><dd>20</dd>"), "{run}");
    assert!(run.contains("C-2"), "{run}");
    assert!(run.contains("invalid_phone"), "{run}");
}

#[tokio::test]
async fn a_form_without_the_csrf_token_is_refused() {
    let c = console().await;
    let s = c.session("ivanova").await;
    for form in [vec![], vec![("csrf", "forged")]] {
        let (status, _, page) = c.post(&s, "/pipelines/uo-1-demo/run", &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    }
    let (status, _, _) = c.post(&s, "/logout", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing ran.
    let (_, page) = c.get(&s, "/pipelines/uo-1-demo").await;
    assert!(page.contains("Запусков ещё не было"), "{page}");
}

#[tokio::test]
async fn another_organizations_pipelines_and_runs_are_not_found() {
    let c = console().await;
    let theirs = c.session("petrov").await;
    let (location, _) = c.run_now(&theirs, "uo-2-demo").await;
    let ours = c.session("ivanova").await;
    for path in [
        "/pipelines/uo-2-demo",
        location.as_str(),
        &format!("{location}/progress"),
        &format!("{location}/results"),
        "/runs/abc",
    ] {
        let (status, page) = c.get(&ours, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {page}");
        assert!(!page.contains("uo-2"), "{path}: {page}");
    }
    let (status, _, _) = c
        .post(&ours, "/pipelines/uo-2-demo/run", &[("csrf", &ours.csrf)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_slowed_down() {
    let c = console().await;
    for _ in 0..5 {
        let r = c.sign_in("ivanova", "не тот").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Неверный логин или пароль")
        );
    }
    // The sixth try within the minute is refused even with the right password.
    let r = c.sign_in("ivanova", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another login is not slowed down by it.
    assert_eq!(
        c.sign_in("petrov", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    // An unknown login reads the same as a wrong password.
    let r = c.sign_in("nobody", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_or_removing_the_user_ends_the_session() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let (status, location, _) = c.post(&s, "/logout", &[("csrf", &s.csrf)]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/login"))
    );
    let (status, _) = c.get(&s, "/").await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );

    let s = c.session("ivanova").await;
    assert!(c.db.store.remove_user("ivanova").await.unwrap());
    let (status, _) = c.get(&s, "/pipelines/uo-1-demo").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.sign_in("ivanova", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pages_without_a_session_lead_to_sign_in() {
    let c = console().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/pipelines/uo-1-demo", "/runs/1"] {
        let r = http.get(format!("{}{path}", c.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()[LOCATION], "/login");
    }
    let page = http
        .get(format!("{}/login", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for label in ["Логин", "Пароль", "Войти"] {
        assert!(page.contains(label), "{page}");
    }
    // A forged or stale cookie is no session.
    let r = http
        .get(format!("{}/", c.base))
        .header(COOKIE, "crm_session=0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

impl Console {
    /// Uploads a file in the upload form; the status, the redirect and the page.
    async fn upload(
        &self,
        session: &Session,
        csrf: &str,
        source: &str,
        path: &str,
    ) -> (StatusCode, Option<String>, String) {
        self.upload_as(session, csrf, source, path, "").await
    }

    /// [`Console::upload`] with a layout chosen in the form.
    async fn upload_as(
        &self,
        session: &Session,
        csrf: &str,
        source: &str,
        path: &str,
        layout: &str,
    ) -> (StatusCode, Option<String>, String) {
        let bytes = std::fs::read(path).unwrap();
        let name = if layout.is_empty() {
            "export.xml".to_owned()
        } else {
            std::path::Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .text("source", source.to_owned())
            .text("layout", layout.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        let r = self
            .http
            .post(format!("{}/upload", self.base))
            .header(COOKIE, &session.cookie)
            .multipart(form)
            .send()
            .await
            .unwrap();
        answer(r).await
    }
}

#[tokio::test]
async fn an_uploaded_file_is_imported_as_a_run() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let (status, page) = c.get(&s, "/upload").await;
    assert_eq!(status, StatusCode::OK);
    for label in ["Источник", "Формат файла", "Файл выгрузки", "Загрузить"]
    {
        assert!(page.contains(label), "{page}");
    }

    // Without the session's token nothing is read or imported.
    let (status, _, _) = c.upload(&s, "forged", SRC, &testdata("demo.xml")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(c.db.of_type(ORG, "premise").await.is_empty());

    let (status, location, page) = c.upload(&s, &s.csrf, SRC, &testdata("demo.xml")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, run) = c.get(&s, &location.unwrap()).await;
    assert!(run.contains(">OK<"), "{run}");
    assert!(run.contains("export.xml"), "{run}");
    assert!(run.contains("<th>Помещения</th><td>3</td>"), "{run}");
    assert_eq!(c.db.of_type(ORG, "client").await.len(), 4);

    // A broken file's run says where it broke.
    let (status, location, _) = c
        .upload(&s, &s.csrf, SRC, &testdata("defects/invalid_phone.xml"))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, run) = c.get(&s, &location.unwrap()).await;
    assert!(run.contains("Ошибка"), "{run}");
    assert!(
        run.contains("<dt>Идентификатор записи</dt><dd>C-2</dd>"),
        "{run}"
    );

    // A missing source is said at the form.
    let (status, _, page) = c.upload(&s, &s.csrf, " ", &testdata("demo.xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Укажите источник"), "{page}");
}

#[tokio::test]
async fn a_spreadsheet_is_uploaded_with_its_layout_and_only_an_offered_layout_is_read() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let premises = testdata("layouts/premises.csv");
    // A path that is not one of the offered layouts is refused before anything is read.
    let (status, _, page) = c
        .upload_as(&s, &s.csrf, "billing", &premises, "pipelines/demo.toml")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Выберите формат файла"), "{page}");
    assert!(c.db.of_type(ORG, "premise").await.is_empty());

    let (status, location, page) = c
        .upload_as(
            &s,
            &s.csrf,
            "billing",
            &premises,
            "layouts/premises-csv.toml",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, run) = c.get(&s, &location.unwrap()).await;
    assert!(run.contains(">OK<"), "{run}");
    assert!(run.contains("premises.csv"), "{run}");
    assert_eq!(c.db.of_type(ORG, "premise").await.len(), 3);
    assert_eq!(c.db.of_type(ORG, "account").await.len(), 3);
}

/// The settings form's fields for a pipeline of the demo export, run at 03:00.
fn settings(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("name", name.to_owned()),
        ("source", SRC.to_owned()),
        ("files", testdata("demo.xml")),
        // The demo file is complete: no wait for it to settle.
        ("settle_secs", "0".to_owned()),
        ("notify", "ivanova@uo-1.ru".to_owned()),
        ("minute", "0".to_owned()),
        ("hour", "3".to_owned()),
        ("day", "*".to_owned()),
        ("month", "*".to_owned()),
        ("weekday", "1,5".to_owned()),
        ("timezone", "Europe/Moscow".to_owned()),
        ("ftp_port", "21".to_owned()),
        ("ftp_passive", "on".to_owned()),
    ]
}

fn with<'a>(
    fields: &'a [(&'static str, String)],
    csrf: &'a str,
    changes: &[(&'static str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (key, value) in changes {
        form.retain(|(k, _)| k != key);
        form.push((key, value));
    }
    form.push(("csrf", csrf));
    form
}

#[tokio::test]
async fn a_pipeline_made_in_the_form_is_saved_listed_and_run() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let (status, page) = c.get(&s, "/pipelines/new").await;
    assert_eq!(status, StatusCode::OK);
    for label in [
        "Название",
        "Источник",
        "Адрес файла(ов)",
        "Удалять файлы выгрузки после прочтения",
        "Ждать, пока файл допишется, секунд",
        "Не меньше записей в файле",
        "Допустимое сокращение выгрузки, %",
        "Уведомлять на email",
        "Минуты",
        "Часы",
        "День месяца",
        "Месяц",
        "День недели",
        "Часовой пояс",
        "Сервер",
        "Порт",
        "Пользователь",
        "Пароль",
        "FTPS",
        "Пассивный режим",
        "Сохранить",
    ] {
        assert!(
            page.contains(&format!(">{label}<")) || page.contains(&format!("> {label}<")),
            "{label}"
        );
    }
    let fields = settings("Ночная выгрузка");
    let (status, location, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &[]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let location = location.unwrap();
    let (status, page) = c.get(&s, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("по понедельникам и пятницам в 03:00"),
        "{page}"
    );
    assert!(page.contains("ivanova@uo-1.ru"));
    assert_eq!(c.db.store.stored_pipelines().await.unwrap().len(), 1);

    let (_, home) = c.get(&s, "/").await;
    assert!(home.contains("Ночная выгрузка"), "{home}");
    let (_, run) = c.run_now(&s, &location["/pipelines/".len()..]).await;
    assert!(run.contains(">OK<"), "{run}");
    assert_eq!(c.db.of_type(ORG, "client").await.len(), 4);

    // Edited: the schedule changes, the name stays.
    let (status, _, page) = c
        .post(&s, &location, &with(&fields, &s.csrf, &[("hour", "4")]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, page) = c.get(&s, &location).await;
    assert!(page.contains("в 04:00"), "{page}");

    // Another organization's user finds nothing of it.
    let theirs = c.session("petrov").await;
    let (status, _) = c.get(&theirs, &location).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = c
        .post(&theirs, &location, &with(&fields, &theirs.csrf, &[]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = c
        .post(
            &theirs,
            &format!("{location}/delete"),
            &[("csrf", &theirs.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, to, _) = c
        .post(&s, &format!("{location}/delete"), &[("csrf", &s.csrf)])
        .await;
    assert_eq!((status, to.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    assert!(c.db.store.stored_pipelines().await.unwrap().is_empty());
}

/// The guards against a broken export are set in the form, kept with the pipeline and shown
/// again; a value out of range is shown at its field.
#[tokio::test]
async fn the_guards_against_a_broken_export_are_set_in_the_form() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let fields = settings("guarded");
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("max_shrink_percent", "150")]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"max_shrink_percent-error\""), "{page}");
    // A limit on archiving without a full snapshot is a mistake at its field.
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("max_archive_percent", "20")]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"max_archive_percent-error\""), "{page}");
    assert!(c.db.store.stored_pipelines().await.unwrap().is_empty());

    let guards = [
        ("min_records", "3"),
        ("max_shrink_percent", "40"),
        ("snapshot", "on"),
        ("max_archive_percent", "20"),
    ];
    let (status, location, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &guards))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let stored = c.db.store.stored_pipelines().await.unwrap();
    assert!(
        stored[0].definition.contains("min_records = 3"),
        "{}",
        stored[0].definition
    );
    assert!(stored[0].definition.contains("max_shrink_percent = 40"));
    assert!(stored[0].definition.contains("mode = \"snapshot\""));
    assert!(stored[0].definition.contains("max_archive_percent = 20"));
    let (_, page) = c.get(&s, &location.unwrap()).await;
    assert!(page.contains("value=\"40\""), "{page}");
    assert!(page.contains("value=\"20\""), "{page}");
    assert!(
        page.contains("name=\"snapshot\" type=\"checkbox\" checked"),
        "{page}"
    );
}

#[tokio::test]
async fn a_layout_for_a_foreign_export_is_chosen_in_the_form() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let fields = settings("from-1c");
    let (_, page) = c.get(&s, "/pipelines/new").await;
    // The shipped layouts are offered by what they read (the page escapes each /).
    assert!(
        page.contains(
            "<option value=\"layouts&#x2f;1c.toml\">1C: Выгрузка &#x2f; Помещения &#x2f; Физлица</option>"
        ),
        "{page}"
    );
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("layout", "layouts/missing.toml")]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"layout-error\""), "{page}");
    let (status, location, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("layout", "layouts/1c.toml")]),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let stored = c.db.store.stored_pipelines().await.unwrap();
    assert!(
        stored[0]
            .definition
            .contains("layout = \"layouts/1c.toml\""),
        "{}",
        stored[0].definition
    );
    let (_, page) = c.get(&s, &location.unwrap()).await;
    assert!(
        page.contains("<option value=\"layouts&#x2f;1c.toml\" selected>"),
        "{page}"
    );
}

#[tokio::test]
async fn a_bad_schedule_is_shown_at_its_field_and_nothing_is_saved() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let fields = settings("nightly");
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(
                &fields,
                &s.csrf,
                &[("hour", "25"), ("timezone", "Mars/Olympus")],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"schedule-error\""), "{page}");
    assert!(page.contains("id=\"timezone-error\""), "{page}");
    // What was typed is kept.
    assert!(page.contains("value=\"25\""), "{page}");
    assert!(page.contains("ivanova@uo-1.ru"));
    assert!(c.db.store.stored_pipelines().await.unwrap().is_empty());

    // A file's pipeline keeps its name.
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("name", "uo-1-demo")]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"name-error\""), "{page}");
}

#[tokio::test]
async fn the_ftp_password_is_stored_sealed_and_never_shown() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let secret = "ftp-пароль-42";
    let fields = settings("ftp-nightly");
    let ftp = [
        ("ftp_host", "127.0.0.1"),
        ("ftp_user", "uo1"),
        ("files", "/exports/a.xml"),
    ];
    // A user without a password is a mistake at «Пароль».
    let (status, _, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &ftp))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"ftp_password-error\""), "{page}");

    let mut typed = ftp.to_vec();
    typed.push(("ftp_password", secret));
    let (status, location, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &typed))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let stored = c.db.store.stored_pipelines().await.unwrap();
    let sealed = stored[0].ftp_password.clone().unwrap();
    assert!(!sealed.contains(secret) && !stored[0].definition.contains(secret));
    let key = SecretKey::from_base64(SECRET_KEY).unwrap();
    assert_eq!(key.open(&sealed).unwrap().expose(), secret);

    // Shown as set, never sent back; saved again with the field empty, it stays.
    let (_, page) = c.get(&s, &location.clone().unwrap()).await;
    assert!(page.contains("пароль сохранён"), "{page}");
    assert!(!page.contains(secret));
    let (status, _, _) = c
        .post(
            &s,
            &location.clone().unwrap(),
            &with(&fields, &s.csrf, &ftp),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let again = c.db.store.stored_pipelines().await.unwrap();
    assert_eq!(again[0].ftp_password.as_deref(), Some(sealed.as_str()));
    for path in ["/", location.as_deref().unwrap()] {
        let (_, page) = c.get(&s, path).await;
        assert!(!page.contains(secret), "{path}");
    }
}

#[tokio::test]
async fn check_connection_logs_in_and_says_what_each_address_finds() {
    use crate::ftp_source::{PASSWORD as FTP_PASSWORD, Server, ServerOptions, USER};
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", "<crm-import/>");
    server.put("/exports/b.xml", "<crm-import/>");
    server.put("/exports/readme.txt", "-");
    let c = console().await;
    let s = c.session("ivanova").await;
    let fields = settings("ftp-check");
    let port = server.port.to_string();
    let ftp = [
        ("ftp_host", "127.0.0.1"),
        ("ftp_port", port.as_str()),
        ("ftp_user", USER),
        ("files", "/exports/*.xml, /exports/missing.xml"),
        ("action", "check"),
    ];
    let mut typed = ftp.to_vec();
    typed.push(("ftp_password", FTP_PASSWORD));
    let (status, _, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &typed))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // minijinja escapes `/` in text.
    let page = page.replace("&#x2f;", "/");
    assert!(page.contains("Соединение установлено"), "{page}");
    assert!(
        page.contains("/exports/*.xml: найдено /exports/a.xml, /exports/b.xml"),
        "{page}"
    );
    assert!(
        page.contains("/exports/missing.xml: не найдено; в папке /exports:"),
        "{page}"
    );
    assert!(!page.contains(FTP_PASSWORD), "the password is sent back");
    assert!(
        c.db.store.stored_pipelines().await.unwrap().is_empty(),
        "a check saves nothing"
    );

    // A wrong password: the error, with its code, and still no secret.
    let mut wrong = ftp.to_vec();
    wrong.push(("ftp_password", "не тот"));
    let (_, _, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &wrong))
        .await;
    assert!(page.contains("ftp_login_failed"), "{page}");

    // Saved, the check uses the stored password.
    let mut save = typed.clone();
    save.retain(|(k, _)| *k != "action");
    let (status, location, page) = c
        .post(&s, "/pipelines/new", &with(&fields, &s.csrf, &save))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, _, page) = c
        .post(&s, &location.unwrap(), &with(&fields, &s.csrf, &ftp))
        .await;
    assert!(
        page.replace("&#x2f;", "/")
            .contains("найдено /exports/a.xml"),
        "{page}"
    );
}

#[tokio::test]
async fn a_session_idle_for_longer_than_allowed_is_ended() {
    let c = console().await;
    let user =
        c.db.store
            .password_hash("ivanova")
            .await
            .unwrap()
            .unwrap()
            .0;
    c.db.store
        .open_session("idle-hash", user, "csrf")
        .await
        .unwrap();
    assert!(
        c.db.store
            .session("idle-hash", console::IDLE)
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Idle for more than nothing: ended, and gone for good.
    assert!(
        c.db.store
            .session("idle-hash", std::time::Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.db.store
            .session("idle-hash", console::IDLE)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn run_now_while_the_pipeline_runs_is_refused_with_a_message() {
    let c = console().await;
    let s = c.session("ivanova").await;
    // Another process holds the pipeline.
    let scope = c.db.store.scope(ORG, SRC).await.unwrap();
    let held =
        c.db.store
            .start_run(
                scope.org_id,
                Some("uo-1-demo"),
                crm_import::store::Trigger::Schedule,
            )
            .await
            .unwrap();
    let crm_import::store::RunStart::Started(holder) = held else {
        panic!("{held:?}");
    };
    let (status, _, page) = c
        .post(&s, "/pipelines/uo-1-demo/run", &[("csrf", &s.csrf)])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("Запуск отклонён"), "{page}");
    assert!(page.contains(&format!("run {holder}")), "{page}");
    // The holder's run shows as running, with its progress as JSON for the page's script.
    let (_, progress) = c.get(&s, &format!("/runs/{holder}/progress")).await;
    let progress: serde_json::Value = serde_json::from_str(&progress).unwrap();
    assert_eq!(progress["running"], true, "{progress}");
    let (_, page) = c.get(&s, &format!("/runs/{holder}")).await;
    assert!(page.contains("Выполняется"), "{page}");
    assert!(page.contains("/static/console.js"), "{page}");
}

#[tokio::test]
async fn a_password_is_refused_without_the_secret_key() {
    let db = Db::new().await;
    let daemon = Daemon::without_files(Arc::new(db.store.clone()), None);
    let definition = format!(
        "name = \"ftp\"\nsource = \"{SRC}\"\nfiles = [\"/a.xml\"]\n[ftp]\nhost = \"127.0.0.1\"\nuser = \"uo\"\n"
    );
    let refused = daemon
        .save_pipeline(ORG, &definition, Some("secret"), true)
        .await
        .unwrap_err();
    let crm_import::daemon::SaveError::Invalid(errors) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(errors[0].key, "ftp.password");
    assert!(errors[0].message.contains("CRM_SECRET_KEY"), "{errors:?}");
    assert!(db.store.stored_pipelines().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_run_continues_from_where_it_halted_with_one_button() {
    let c = console().await;
    let s = c.session("ivanova").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.xml");
    std::fs::write(&file, crate::resume::export(Some(250))).unwrap();
    let fields = settings("fixable");
    let path = file.display().to_string();
    let (status, _, page) = c
        .post(
            &s,
            "/pipelines/new",
            &with(&fields, &s.csrf, &[("files", &path)]),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (failed, page) = c.run_now(&s, "fixable").await;
    assert!(page.contains("invalid_phone"), "{page}");
    assert!(page.contains(">Продолжить</button>"), "{page}");

    // Without the form's token nothing starts.
    let (status, _, _) = c.post(&s, &format!("{failed}/resume"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    std::fs::write(&file, crate::resume::export(None)).unwrap();
    let (status, location, page) = c
        .post(&s, &format!("{failed}/resume"), &[("csrf", &s.csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let location = location.unwrap();
    let mut page = String::new();
    for _ in 0..200 {
        page = c.get(&s, &location).await.1;
        if !page.contains("Выполняется") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(page.contains("Записей загружено: 51"), "{page}");
    assert!(page.contains("resumed"), "{page}");
    assert!(!page.contains(">Продолжить</button>"), "an ok run: {page}");
    assert_eq!(c.db.export(ORG).await, crate::resume::clean().await);

    // Another organization cannot continue it.
    let theirs = c.session("petrov").await;
    let (status, _, _) = c
        .post(
            &theirs,
            &format!("{failed}/resume"),
            &[("csrf", &theirs.csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
