//! SPEC §5, one test per case, asserted through the export and the report's counts.

use crm_import::matching::{PHONE_IN_OTHER_ORGANIZATION_MESSAGE, PHONE_TAKEN_MESSAGE};

use crate::common::*;

const P: &str = "+79123456789";
const Q: &str = "+79161234567";

#[tokio::test]
async fn case_4_creates_a_card_even_if_the_phone_is_used_in_another_organization() {
    let db = Db::new().await;
    db.import_as("uo-2", SRC, &doc("", &client("X-1", "Чужой", Some(P), "")))
        .await;
    let report = db
        .import(&doc(
            "",
            &client("C-1", "Иванов", Some("8 (912) 345-67-89"), ""),
        ))
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.created, 1);
    let card = db.client(ORG, SRC, "C-1").await.unwrap();
    assert_eq!(card["phone"], P);
    assert_eq!(card["name"], "Иванов");
    assert_eq!(card["logged_in"], false);
}

#[tokio::test]
async fn case_3_adds_the_external_id_to_the_card_with_the_phone() {
    let db = Db::new().await;
    db.import(&doc(
        &premise("P-1", &[]),
        &client(
            "C-1",
            "Иванов",
            Some(P),
            "<premise ref=\"P-1\" role=\"owner\"/>",
        ),
    ))
    .await;
    db.import_as(
        ORG,
        "billing",
        &doc(&premise("B-P-9", &[("B-A-9", "900")]), ""),
    )
    .await;
    let report = db
        .import_as(
            ORG,
            "billing",
            &doc(
                "",
                &client(
                    "B-7",
                    "Иванов И. И.",
                    Some(P),
                    "<premise ref=\"B-P-9\" role=\"tenant\"/><account ref=\"B-A-9\"/>",
                ),
            ),
        )
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.external_id_added, 1);
    let clients = db.of_type(ORG, "client").await;
    assert_eq!(clients.len(), 1, "no second card: {clients:?}");
    let card = &clients[0];
    assert_eq!(
        card["external_ids"],
        serde_json::json!([{"source": "1c", "id": "C-1"}, {"source": "billing", "id": "B-7"}])
    );
    // B's other fields stay; its links from the new source are the record's.
    assert_eq!(card["name"], "Иванов");
    assert_eq!(
        card["premises"],
        serde_json::json!([{"source": "1c", "id": "P-1", "role": "owner"}, {"source": "billing", "id": "B-P-9", "role": "tenant"}])
    );
    assert_eq!(
        card["accounts"],
        serde_json::json!([{"source": "billing", "id": "B-A-9"}])
    );
}

#[tokio::test]
async fn case_1_overwrites_fields_and_keeps_phone_and_ids() {
    let db = Db::new().await;
    db.import(&doc(
        &format!("{}{}", premise("P-1", &[]), premise("P-2", &[])),
        &client(
            "C-1",
            "Иванов",
            Some(P),
            "<premise ref=\"P-1\" role=\"owner\"/>",
        ),
    ))
    .await;
    let same_phone = db
        .import(&doc(
            "",
            &client(
                "C-1",
                "Иванов Иван",
                Some("8 912 345 67 89"),
                "<premise ref=\"P-2\" role=\"tenant\"/>",
            ),
        ))
        .await;
    assert_eq!(
        same_phone.counts.client.updated,
        1,
        "{}",
        same_phone.summary()
    );
    let no_phone = db
        .import(&doc("", &client("C-1", "Иванов Иван Иванович", None, "")))
        .await;
    assert_eq!(no_phone.counts.client.updated, 1);
    let card = db.client(ORG, SRC, "C-1").await.unwrap();
    assert_eq!(card["name"], "Иванов Иван Иванович");
    assert_eq!(card["phone"], P, "an absent phone leaves the card's phone");
    assert_eq!(card["premises"], serde_json::json!([]));
    let again = db
        .import(&doc("", &client("C-1", "Иванов Иван Иванович", None, "")))
        .await;
    assert_eq!(again.counts.client.unchanged, 1);
}

#[tokio::test]
async fn case_2a_changes_the_phone_and_keeps_the_old_one_in_history() {
    let db = Db::new().await;
    db.import(&doc("", &client("C-1", "Иванов", Some(P), "")))
        .await;
    let report = db
        .import(&doc("", &client("C-1", "Иванов", Some(Q), "")))
        .await;
    assert!(report.is_ok());
    assert_eq!(report.counts.client.updated, 1);
    assert_eq!(db.client(ORG, SRC, "C-1").await.unwrap()["phone"], Q);
    // The old phone is history now: another card may not take it (2b, second condition).
    db.import(&doc("", &client("C-2", "Петров", None, "")))
        .await;
    let report = db
        .import(&doc("", &client("C-2", "Петров", Some(P), "")))
        .await;
    assert_eq!(error_code(&report).as_deref(), Some("phone_taken"));
}

#[tokio::test]
async fn case_2b_refuses_the_phone_of_a_card_that_logged_in() {
    let db = Db::new().await;
    db.import(&doc(
        "",
        &format!(
            "{}{}",
            client("C-1", "Иванов", Some(Q), ""),
            client("C-2", "Петров", Some(P), "")
        ),
    ))
    .await;
    assert_eq!(db.login(P).await, 1);
    let report = db
        .import(&doc("", &client("C-1", "Иванов Новый", Some(P), "")))
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "phone_taken");
    assert_eq!(error.message, PHONE_TAKEN_MESSAGE);
    assert_eq!(error.record_id.as_deref(), Some("C-1"));
    assert_eq!(error.field.as_deref(), Some("phone"));
    let card = db.client(ORG, SRC, "C-1").await.unwrap();
    assert_eq!(
        (card["name"].as_str(), card["phone"].as_str()),
        (Some("Иванов"), Some(Q)),
        "nothing written"
    );
}

#[tokio::test]
async fn case_2b_refuses_a_phone_another_card_had_before() {
    let db = Db::new().await;
    db.import(&doc(
        "",
        &format!(
            "{}{}",
            client("C-1", "Иванов", Some(Q), ""),
            client("C-2", "Петров", Some(P), "")
        ),
    ))
    .await;
    // C-2 moves to a third phone: P is now only in C-2's history.
    db.import(&doc("", &client("C-2", "Петров", Some("+79031112233"), "")))
        .await;
    let report = db
        .import(&doc("", &client("C-1", "Иванов", Some(P), "")))
        .await;
    assert_eq!(error_code(&report).as_deref(), Some("phone_taken"));
    assert_eq!(db.client(ORG, SRC, "C-1").await.unwrap()["phone"], Q);
}

#[tokio::test]
async fn case_2c_refuses_a_phone_registered_in_another_organization() {
    let db = Db::new().await;
    db.import_as("uo-2", SRC, &doc("", &client("X-1", "Чужой", Some(P), "")))
        .await;
    db.import(&doc("", &client("C-1", "Иванов", Some(Q), "")))
        .await;
    let report = db
        .import(&doc("", &client("C-1", "Иванов", Some(P), "")))
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "phone_in_other_organization");
    assert_eq!(error.message, PHONE_IN_OTHER_ORGANIZATION_MESSAGE);
    assert_eq!(db.client(ORG, SRC, "C-1").await.unwrap()["phone"], Q);
}

#[tokio::test]
async fn case_2d_merges_a_card_that_never_logged_in() {
    let db = Db::new().await;
    db.import(&doc(
        &premise("P-1", &[("A-1", "1001")]),
        &client(
            "C-1",
            "Иванов",
            Some(Q),
            "<premise ref=\"P-1\" role=\"owner\"/>",
        ),
    ))
    .await;
    db.import_as(
        ORG,
        "billing",
        &doc(&premise("B-P-2", &[("B-A-2", "2002")]), ""),
    )
    .await;
    db.import_as(
        ORG,
        "billing",
        &doc(
            "",
            &client(
                "B-5",
                "Иванов (биллинг)",
                Some(P),
                "<premise ref=\"B-P-2\" role=\"tenant\"/><account ref=\"B-A-2\"/>",
            ),
        ),
    )
    .await;
    db.login(Q).await;
    let report = db
        .import(&doc(
            "",
            &client(
                "C-1",
                "Иванов Иван",
                Some(P),
                "<premise ref=\"P-1\" role=\"owner\"/><account ref=\"A-1\"/>",
            ),
        ))
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.client.merged, 1);
    let clients = db.of_type(ORG, "client").await;
    assert_eq!(clients.len(), 1, "the loser card is gone: {clients:?}");
    let card = &clients[0];
    assert_eq!(card["phone"], P);
    assert_eq!(card["name"], "Иванов Иван");
    assert_eq!(
        card["logged_in"], true,
        "the winner keeps its own login state"
    );
    assert_eq!(
        card["external_ids"],
        serde_json::json!([{"source": "1c", "id": "C-1"}, {"source": "billing", "id": "B-5"}])
    );
    assert_eq!(
        card["premises"],
        serde_json::json!([{"source": "1c", "id": "P-1", "role": "owner"}, {"source": "billing", "id": "B-P-2", "role": "tenant"}])
    );
    assert_eq!(
        card["accounts"],
        serde_json::json!([{"source": "1c", "id": "A-1"}, {"source": "billing", "id": "B-A-2"}])
    );
    // The winner's old phone went to history: nobody else may take it now.
    db.import(&doc(
        "",
        &client("C-9", "Сидоров", Some("+79031112233"), ""),
    ))
    .await;
    let report = db
        .import(&doc("", &client("C-9", "Сидоров", Some(Q), "")))
        .await;
    assert_eq!(error_code(&report).as_deref(), Some("phone_taken"));
}

#[tokio::test]
async fn premises_and_accounts_are_upserted_by_key() {
    let db = Db::new().await;
    let first = db
        .import(&doc(
            &premise("P-1", &[("A-1", "1001"), ("A-2", "1002")]),
            "",
        ))
        .await;
    assert_eq!(
        (first.counts.premise.created, first.counts.account.created),
        (1, 2)
    );
    let xml = doc(
        "<premise id=\"P-1\"><address>Казань, ул. Ленина, д. 1</address><number>P-1</number><area>40.5</area>\
         <accounts><account id=\"A-1\"><number>1001</number></account><account id=\"A-2\"><number>1002</number><residents>2</residents></account></accounts></premise>\n",
        "",
    );
    let second = db.import(&xml).await;
    assert_eq!(second.counts.premise.updated, 1);
    assert_eq!(
        (
            second.counts.account.unchanged,
            second.counts.account.updated
        ),
        (1, 1)
    );
    let premises = db.of_type(ORG, "premise").await;
    assert_eq!(premises[0]["area"], 40.5);
    assert_eq!(premises[0]["kind"], "flat");
    let accounts = db.of_type(ORG, "account").await;
    assert_eq!(accounts[1]["residents"], 2);
}

#[tokio::test]
async fn account_number_taken_refuses_the_whole_premise() {
    let db = Db::new().await;
    let report = db
        .import_files(
            ORG,
            SRC,
            &[testdata("defects/account_number_taken.xml")],
            1000,
        )
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "account_number_taken");
    assert_eq!(
        (error.record_index, error.record_id.as_deref()),
        (Some(2), Some("P-2"))
    );
    let premises: Vec<String> = db
        .of_type(ORG, "premise")
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        premises,
        vec!["P-1"],
        "P-2 is refused whole, P-3 is never applied"
    );
    let accounts = db.of_type(ORG, "account").await;
    assert_eq!(accounts.len(), 1);
}

#[tokio::test]
async fn links_resolve_only_against_the_same_source() {
    let db = Db::new().await;
    db.import_as(ORG, "billing", &doc(&premise("P-1", &[]), ""))
        .await;
    let report = db
        .import(&doc(
            "",
            &client(
                "C-1",
                "Иванов",
                Some(P),
                "<premise ref=\"P-1\" role=\"owner\"/>",
            ),
        ))
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.field.as_deref()),
        ("unknown_premise_ref", Some("premise.ref"))
    );
}
