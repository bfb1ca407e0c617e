//! Foreign exports through layout files (SPEC §13): the shipped layouts import their samples
//! to the same data as the native format; a layout's mistakes, a value outside a map, a
//! missing column and a bad cell are reported with where they are.

use std::path::Path;
use std::sync::Arc;

use crm_import::layout::Layout;
use crm_import::pipeline::Options;
use crm_import::report::RunReport;
use crm_import::run::{Job, run_import};
use crm_import::source::Files;
use crm_import::store::Trigger;

use crate::common::{Db, ORG, SRC, crm_import_in, error_code};

/// `crm-import check ARGS` in `dir`: its exit code and output.
fn check(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("check")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), output)
}

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn layout(name: &str) -> Arc<Layout> {
    Arc::new(Layout::load(Path::new(&shipped(&format!("layouts/{name}")))).unwrap())
}

/// Imports one file through a layout, as `import FILE --layout L` does.
async fn import(db: &Db, file: &str, layout: Arc<Layout>) -> RunReport {
    run_import(
        &db.store,
        &Job {
            pipeline: None,
            org: ORG,
            source: SRC,
            files: &Files::local(&[file.to_owned()]),
            trigger: Trigger::Manual,
        },
        Options {
            layout,
            ..Options::default()
        },
    )
    .await
    .unwrap()
    .report
}

fn sample(name: &str) -> String {
    shipped(&format!("testdata/layouts/{name}"))
}

#[tokio::test]
async fn every_shipped_layout_imports_its_sample_to_the_same_export_as_the_native_format() {
    let native = Db::new().await;
    let report = import(&native, &sample("native.xml"), Layout::native()).await;
    assert_eq!(error_code(&report), None, "{report:?}");
    let expected = native.export(ORG).await;
    assert!(expected.contains("Петрова Анна Сергеевна") && expected.contains("+79123456780"));

    let one_c = Db::new().await;
    let report = import(&one_c, &sample("1c.xml"), layout("1c.toml")).await;
    assert_eq!(error_code(&report), None, "{report:?}");
    assert_eq!(
        one_c.export(ORG).await,
        expected,
        "1c.xml through layouts/1c.toml"
    );

    let csv = Db::new().await;
    for (file, name) in [
        ("premises.csv", "premises-csv.toml"),
        ("clients.csv", "clients-csv.toml"),
    ] {
        let report = import(&csv, &sample(file), layout(name)).await;
        assert_eq!(error_code(&report), None, "{file}: {report:?}");
    }
    assert_eq!(csv.export(ORG).await, expected, "the two CSV files");

    let xlsx = Db::new().await;
    for (file, name) in [
        ("premises.csv", "premises-csv.toml"),
        ("residents.xlsx", "residents-xlsx.toml"),
    ] {
        let report = import(&xlsx, &sample(file), layout(name)).await;
        assert_eq!(error_code(&report), None, "{file}: {report:?}");
    }
    assert_eq!(
        xlsx.export(ORG).await,
        expected,
        "premises CSV and residents XLSX"
    );
}

#[tokio::test]
async fn a_value_outside_the_map_halts_naming_the_value_and_the_allowed_ones() {
    let db = Db::new().await;
    let xml = std::fs::read_to_string(sample("1c.xml"))
        .unwrap()
        .replace("<Вид>Машиноместо</Вид>", "<Вид>Гараж</Вид>");
    let report = import(&db, &db.file(&xml), layout("1c.toml")).await;
    let error = report.error.as_ref().expect("the run halts");
    assert_eq!(error.code, "unmapped_value");
    for expected in ["\"Гараж\"", "\"Квартира\"", "\"Машиноместо\"", "kind"]
    {
        assert!(error.message.contains(expected), "{expected}: {error:?}");
    }
    assert_eq!(error.record_id.as_deref(), Some("P-3"), "{error:?}");
    // The records before it are kept.
    let export = db.export(ORG).await;
    assert!(
        export.contains("\"P-2\"") && !export.contains("\"P-3\""),
        "{export}"
    );
}

#[tokio::test]
async fn a_bad_phone_in_csv_row_7_names_line_8_and_keeps_rows_1_to_6() {
    let db = Db::new().await;
    let mut csv =
        String::from("Код;Фамилия;Имя;Отчество;Телефон;E-mail;Помещения;Роль;Лицевые счета\n");
    for n in 1..=9 {
        let phone = if n == 7 {
            "12345".to_owned()
        } else {
            format!("8 912 000-00-0{n}")
        };
        csv.push_str(&format!("C-{n};Иванов;Иван;{n};{phone};;;;\n"));
    }
    let path = db.dir.path().join("clients.csv");
    std::fs::write(&path, csv).unwrap();
    let layout = shipped("layouts/clients-csv.toml");
    let ran = crm_import_in(
        &db,
        db.dir.path(),
        &[
            "import",
            "clients.csv",
            "--org",
            ORG,
            "--source",
            SRC,
            "--layout",
            &layout,
        ],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.output);
    assert!(
        ran.output
            .contains("invalid_phone in clients.csv:8, record 7 (C-7), field phone"),
        "{}",
        ran.output
    );
    let error = &ran.report["error"];
    assert_eq!(error["line"], 8, "{error}");
    assert_eq!(error["record_index"], 7, "{error}");
    let clients = db.of_type(ORG, "client").await;
    assert_eq!(clients.len(), 6, "rows 1 to 6 are kept");
}

#[tokio::test]
async fn a_column_the_layout_names_missing_from_the_header_is_named_with_the_columns_there() {
    let db = Db::new().await;
    let path = db.dir.path().join("clients.csv");
    std::fs::write(&path, "Код;ФИО;Телефон\nC-1;Иванов Иван;89120000001\n").unwrap();
    let report = import(&db, &path.to_string_lossy(), layout("clients-csv.toml")).await;
    let error = report.error.as_ref().expect("the file is refused");
    assert_eq!(error.code, "missing_column");
    for expected in ["\"Фамилия\"", "\"E-mail\"", "\"ФИО\""] {
        assert!(error.message.contains(expected), "{expected}: {error:?}");
    }
    assert!(db.of_type(ORG, "client").await.is_empty());
}

#[tokio::test]
async fn a_bad_layout_file_lists_all_its_mistakes_and_exits_2() {
    let db = Db::new().await;
    std::fs::write(
        db.dir.path().join("bad.toml"),
        r#"
format = "xml"
[premise]
record = "Выгрузка/Помещения/Помещение"
id = "@Код"
address = 7
kind = { from = "Вид", map = { "Квартира" = "apartment" } }
[client]
record = "/Выгрузка/Физлица/Физлицо"
name = "ФИО"
premises = { ref = "@Код" }
"#,
    )
    .unwrap();
    std::fs::write(db.dir.path().join("a.xml"), "<Выгрузка/>").unwrap();
    let (code, output) = check(db.dir.path(), &["a.xml", "--layout", "bad.toml"]);
    assert_eq!(code, Some(2), "{output}");
    for key in [
        "premise.record:",
        "premise.address:",
        "premise.number:",
        "premise.kind.map.Квартира:",
        "client.id:",
        "client.premises.each:",
    ] {
        assert!(output.contains(key), "{key}: {output}");
    }
}

#[tokio::test]
async fn check_shows_the_first_records_as_they_will_be_imported() {
    let db = Db::new().await;
    let layout = shipped("layouts/residents-xlsx.toml");
    let (code, output) = check(
        db.dir.path(),
        &[&sample("residents.xlsx"), "--layout", &layout],
    );
    assert_eq!(code, Some(0), "{output}");
    for expected in [
        "residents.xlsx (sheet Жильцы):4: client C-1",
        // A phone typed into Excel as a number is read as its digits.
        "phone: +79123456789",
        "premise: P-1 (tenant)",
        "premise: P-2 (owner)",
        "checked 3 records",
    ] {
        assert!(output.contains(expected), "{expected}: {output}");
    }
}

#[tokio::test]
async fn a_pipeline_names_its_layout() {
    let db = Db::new().await;
    let pipeline = db.dir.path().join("1c.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"1c\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = [{:?}]\nlayout = {:?}\n",
            sample("1c.xml"),
            shipped("layouts/1c.toml")
        ),
    )
    .unwrap();
    let ran = crm_import_in(&db, db.dir.path(), &["run", "1c.toml"]);
    assert_eq!(ran.code, Some(0), "{}", ran.output);
    assert_eq!(db.of_type(ORG, "premise").await.len(), 3);

    std::fs::write(
        &pipeline,
        format!("name = \"1c\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = [\"a.xml\"]\nlayout = \"missing.toml\"\n"),
    )
    .unwrap();
    let ran = crm_import_in(&db, db.dir.path(), &["run", "1c.toml"]);
    assert_eq!(ran.code, Some(2), "{}", ran.output);
    assert!(ran.output.contains("layout:"), "{}", ran.output);
}
