//! The cards' phones through SQLite's three phone tables (`store::sqlite::phones`): with a
//! 1 MiB cache, 16,000 new phones move out of the recent table and 256,000 on into the big
//! one, so an import of 280,000 clients leaves phones in all three — and every case of the
//! matching table finds them wherever they are. PostgreSQL runs the same test on its index.

use crm_import::store::Settings;

use crate::common::*;

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
    let mut first = clients(1, 280_000);
    let again = client("C-again", "Клиент 5 (второй код)", Some(&phone(5)), "");
    first.insert_str(first.rfind("</clients>").unwrap(), &again);
    let report = db.import(&first).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.created, 280_000);
    assert_eq!(report.counts.client.external_id_added, 1);
    if db.url.starts_with("sqlite:") {
        for table in ["card_phones", "card_phones_middle", "card_phones_recent"] {
            let n = db.count(&format!("SELECT count(*) FROM {table}")).await;
            assert!(n > 0, "no phone in {table}: the test no longer reaches it");
        }
    }

    // Another source of the same organization, its filter off now: case 3 against a phone
    // in the big table (C-10) and in the recent one (C-279999).
    let billing = doc(
        "",
        &[
            client("B-10", "Клиент 10", Some(&phone(10)), ""),
            client("B-279999", "Клиент 279999", Some(&phone(279_999)), ""),
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

    // Case 2d: C-7 takes the phone of C-270000 (in the middle table), which never logged in.
    let report = db
        .import(&doc(
            "",
            &client("C-7", "Клиент 7", Some(&phone(270_000)), ""),
        ))
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.merged, 1);

    // The app's login finds a phone in any table.
    assert_eq!(db.login(&phone(8)).await, 1);
    assert_eq!(db.login(&phone(275_000)).await, 1);

    // One card per phone: every card's phone once in the tables, and nothing else there.
    let cards = db.of_type(ORG, "client").await;
    let with_phone = cards.iter().filter(|c| c["phone"].is_string()).count() as i64;
    assert_eq!(with_phone, 280_000);
    assert_eq!(
        db.count("SELECT count(*) FROM client_phones").await,
        with_phone
    );
    let merged = db.client(ORG, SRC, "C-7").await.unwrap();
    assert_eq!(merged["phone"], phone(270_000));
    assert!(
        db.client(ORG, SRC, "C-270000").await.unwrap()["external_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "C-7")
    );
}
