//! The cards' phones through SQLite's four phone tables (`store::sqlite::phones`): with a
//! 1 MiB cache and chunks of 2,500, 17,500 new phones move out of the recent table at a
//! time, five such into the older table, and five of those on into the big one, so an import
//! of 550,000 clients leaves phones in all four — and every case of the matching table finds
//! them wherever they are. PostgreSQL runs the same test on its index.

use std::path::Path;

use crm_import::store::Settings;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;

use crate::common::*;

const CLIENTS: usize = 550_000;
/// A card of each table once the import is done: the big one takes the first 437,500
/// (25 moves of 17,500), the older one the next 87,500, the middle one the next 17,500.
const BIG: usize = 10;
const OLDER: usize = 450_000;
const MIDDLE: usize = 530_000;
const RECENT: usize = 549_999;

fn phone(i: usize) -> String {
    format!("+7916{i:07}")
}

#[tokio::test]
async fn phones_moved_between_tables_match_as_one_index_would() {
    let settings = Settings {
        cache_mib: 1,
        ..Settings::default()
    };
    let db = Db::tuned(postgres(), &settings).await;
    // An empty organization: its phone filter is on. The last client has the phone of the
    // fifth, which moved out of the recent table long before: the filter must know it.
    let mut first = clients(1, CLIENTS);
    let again = client("C-again", "Клиент 5 (второй код)", Some(&phone(5)), "");
    first.insert_str(first.rfind("</clients>").unwrap(), &again);
    let report = db.import(&first).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.created, CLIENTS as u64);
    assert_eq!(report.counts.client.external_id_added, 1);
    if db.url.starts_with("sqlite:") {
        for (table, card) in [
            ("card_phones", BIG),
            ("card_phones_older", OLDER),
            ("card_phones_middle", MIDDLE),
            ("card_phones_recent", RECENT),
        ] {
            let n = db
                .count(&format!(
                    "SELECT count(*) FROM {table} p JOIN client_external_ids x
                      ON x.client_id = p.client_id WHERE x.ext_id = 'C-{card}'"
                ))
                .await;
            assert_eq!(
                n, 1,
                "C-{card} is not in {table}: the test no longer reaches it"
            );
        }
    }

    // Another source of the same organization, its filter off now: case 3 against a phone
    // in the big table (C-10) and in the recent one.
    let billing = doc(
        "",
        &[
            client("B-10", "Клиент 10", Some(&phone(10)), ""),
            client("B-recent", "Клиент", Some(&phone(RECENT)), ""),
        ]
        .concat(),
    );
    let report = db.import_as(ORG, "billing", &billing).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.external_id_added, 2);

    // Case 2a on a phone in the big table frees it: a new card may take it then.
    let moved = doc(
        "",
        &[
            client("C-6", "Клиент 6", Some("+79990000006"), ""),
            client("C-new", "Новый", Some(&phone(6)), ""),
        ]
        .concat(),
    );
    let report = db.import(&moved).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.updated, 1);
    assert_eq!(report.counts.client.created, 1);

    // Case 2d: C-7 takes the phone of a card in the middle table, which never logged in.
    let report = db
        .import(&doc(
            "",
            &client("C-7", "Клиент 7", Some(&phone(MIDDLE)), ""),
        ))
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.merged, 1);

    // The app's login finds a phone in any table.
    for card in [8, OLDER, MIDDLE + 1, RECENT - 1] {
        assert_eq!(db.login(&phone(card)).await, 1, "C-{card}");
    }

    // Case 2c across organizations: the tables are keyed by organization first, so the
    // look-up seeks in each organization's part of each table.
    let other = "uo-2";
    for (i, card) in [BIG, OLDER, MIDDLE + 2, RECENT - 2].into_iter().enumerate() {
        let (id, own) = (format!("X-{card}"), format!("+7999000000{i}"));
        let report = db
            .import_as(other, SRC, &doc("", &client(&id, "Чужой", Some(&own), "")))
            .await;
        assert!(report.is_ok(), "{}", report.summary());
        let report = db
            .import_as(
                other,
                SRC,
                &doc("", &client(&id, "Чужой", Some(&phone(card)), "")),
            )
            .await;
        assert_eq!(
            error_code(&report).as_deref(),
            Some("phone_in_other_organization"),
            "C-{card}"
        );
        assert_eq!(db.client(other, SRC, &id).await.unwrap()["phone"], own);
    }

    // One card per phone: every card's phone once in the tables, and nothing else there.
    let cards = db.of_type(ORG, "client").await;
    let with_phone = cards.iter().filter(|c| c["phone"].is_string()).count() as i64;
    assert_eq!(with_phone, CLIENTS as i64);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM client_phones
              WHERE org_id = (SELECT id FROM organizations WHERE code = '{ORG}')"
        ))
        .await,
        with_phone
    );
    let merged = db.client(ORG, SRC, "C-7").await.unwrap();
    assert_eq!(merged["phone"], phone(MIDDLE));
    assert!(
        db.client(ORG, SRC, &format!("C-{MIDDLE}")).await.unwrap()["external_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "C-7")
    );
}

/// A database made before migration 0011 keeps every card's phone through it: each of the
/// four tables rebuilt by organization, and every case finds the phones wherever they were.
/// SQLite only: PostgreSQL keeps its phones in an index on the cards.
#[tokio::test]
async fn an_upgrade_to_phones_keyed_by_organization_keeps_every_card() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.db");
    // Migrations 0001–0010 as they were applied, read as sqlx reads them (same checksums).
    let before = dir.path().join("migrations");
    std::fs::create_dir(&before).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap() < "0011" {
            std::fs::copy(&path, before.join(path.file_name().unwrap())).unwrap();
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // Two organizations with one phone in common, and a card of the first in each table.
    let cards = [
        (1, 1, "C-1", phone(1), "card_phones"),
        (2, 1, "C-2", phone(2), "card_phones_older"),
        (3, 1, "C-3", phone(3), "card_phones_middle"),
        (4, 1, "C-4", phone(4), "card_phones_recent"),
        (5, 2, "X-1", phone(1), "card_phones"),
    ];
    let mut script = "INSERT INTO organizations (id, code) VALUES (1, 'uo-1'), (2, 'uo-2');
         INSERT INTO sources (id, org_id, code) VALUES (1, 1, '1c'), (2, 2, '1c');"
        .to_owned();
    for (id, org, ext, phone, table) in &cards {
        script += &format!(
            "INSERT INTO clients (id, org_id, name, phone) VALUES ({id}, {org}, 'Клиент', '{phone}');
             INSERT INTO client_external_ids (source_id, ext_id, client_id) VALUES ({org}, '{ext}', {id});"
        );
        if *table != "card_phones_recent" {
            script += &format!(
                "INSERT INTO {table} SELECT * FROM card_phones_recent WHERE client_id = {id};
                 DELETE FROM card_phones_recent WHERE client_id = {id};"
            );
        }
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let url = format!("sqlite:{}", file.display());
    let db = Db::at(dir, url, &Settings::default()).await;
    for (id, org, _, phone, table) in &cards {
        let found = db
            .count(&format!(
                "SELECT count(*) FROM {table}
                  WHERE org_id = {org} AND phone = '{phone}' AND client_id = {id}"
            ))
            .await;
        assert_eq!(found, 1, "client {id} is not in {table} any more");
        let org_first = db
            .count(&format!(
                "SELECT count(*) FROM pragma_table_info('{table}') WHERE pk = 1 AND name = 'org_id'"
            ))
            .await;
        assert_eq!(org_first, 1, "{table} is not keyed by organization first");
    }
    // Case 3 finds each of the first organization's phones: another source's record with
    // the phone joins that card.
    let billing: String = cards[..4]
        .iter()
        .map(|(_, _, ext, phone, _)| client(&format!("B-{ext}"), "Клиент", Some(phone), ""))
        .collect();
    let report = db.import_as(ORG, "billing", &doc("", &billing)).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.external_id_added, 4);
    assert_eq!(report.counts.client.created, 0);
    // Case 2c across the organizations, and the app's login in both.
    let report = db
        .import_as(
            "uo-2",
            SRC,
            &doc("", &client("X-1", "Клиент", Some(&phone(2)), "")),
        )
        .await;
    assert_eq!(
        error_code(&report).as_deref(),
        Some("phone_in_other_organization")
    );
    assert_eq!(db.login(&phone(1)).await, 2);
}
