//! SPEC §6: re-running the same input is idempotent.

use crate::common::*;

#[tokio::test]
async fn reimport_reports_only_unchanged_and_keeps_the_export() {
    let db = Db::new().await;
    let demo = testdata("demo.xml");
    let first = db
        .import_files(ORG, SRC, std::slice::from_ref(&demo), 2)
        .await;
    assert!(first.is_ok(), "{}", first.summary());
    assert_eq!(first.counts.premise.created, 3);
    assert_eq!(first.counts.account.created, 3);
    assert_eq!(first.counts.client.created, 4);
    let before = db.export(ORG).await;
    let second = db.import_files(ORG, SRC, &[demo], 3).await;
    assert!(second.is_ok());
    assert!(second.counts.all_unchanged(), "{:?}", second.counts);
    assert_eq!(
        second.counts.premise.unchanged + second.counts.client.unchanged,
        7
    );
    assert_eq!(second.counts.account.unchanged, 3);
    assert_eq!(db.export(ORG).await, before);
}

#[tokio::test]
async fn warnings_are_grouped_with_counts_and_never_halt() {
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[testdata("defects/unknown_elements.xml")], 1000)
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    let groups: Vec<(String, u64)> = report
        .warnings
        .iter()
        .map(|w| (w.code.as_str().to_owned(), w.count))
        .collect();
    assert_eq!(
        groups,
        vec![
            ("unknown_element".into(), 1),
            ("unknown_attribute".into(), 1),
            ("unknown_element".into(), 2)
        ]
    );
    assert_eq!(report.warnings_total, 4);
    assert!(report.warnings[2].message.contains("<nickname>"));
    assert_eq!(report.warnings[2].record_id.as_deref(), Some("C-1"));
}

#[tokio::test]
async fn an_implausible_email_is_a_warning_and_not_written() {
    let db = Db::new().await;
    db.import(&doc(
        "",
        "<client id=\"C-1\"><name>Петров Пётр 1</name><phone>8 912 000-00-01</phone><email>petrov@example.ru</email></client>",
    ))
    .await;
    let report = db
        .import_files(ORG, SRC, &[testdata("defects/email_invalid.xml")], 1000)
        .await;
    assert!(report.is_ok());
    assert_eq!(report.warnings[0].code.as_str(), "invalid_email");
    assert_eq!(
        db.client(ORG, SRC, "C-1").await.unwrap()["email"],
        "petrov@example.ru"
    );
}

/// The store reads a chunk's keys as one range of its index when they are neighbours
/// there, and key by key when they are scattered among many stored rows: both must find
/// exactly the stored rows.
#[tokio::test]
async fn neighbouring_and_scattered_keys_find_every_stored_row() {
    let db = Db::new().await;
    let premises: String = (0..200)
        .map(|i| {
            premise(
                &format!("P-{i:03}"),
                &[(&format!("A-{i:03}"), &format!("{i}00"))],
            )
        })
        .collect();
    let clients: String = (0..200)
        .map(|i| {
            let links =
                format!("<premise ref=\"P-{i:03}\" role=\"owner\"/><account ref=\"A-{i:03}\"/>");
            client(
                &format!("C-{i:03}"),
                &format!("Клиент {i}"),
                Some(&format!("+7916{i:07}")),
                &links,
            )
        })
        .collect();
    let all = doc(&premises, &clients);
    assert!(db.import(&all).await.is_ok());
    let before = db.export(ORG).await;

    let again = db.import(&all).await;
    assert!(again.counts.all_unchanged(), "{:?}", again.counts);
    assert_eq!(again.counts.premise.unchanged, 200);
    assert_eq!(again.counts.client.unchanged, 200);
    assert_eq!(db.export(ORG).await, before);

    let moved = |i: usize| {
        premise(
            &format!("P-{i:03}"),
            &[(&format!("A-{i:03}"), &format!("{i}00"))],
        )
        .replace("д. 1<", "д. 2<")
    };
    let scattered = doc(
        &format!("{}{}{}", moved(10), moved(100), moved(190)),
        &format!(
            "{}{}",
            client(
                "C-020",
                "Клиентка 20",
                Some("+79160000020"),
                "<premise ref=\"P-020\" role=\"owner\"/><account ref=\"A-020\"/>"
            ),
            client(
                "C-150",
                "Клиент 150",
                Some("+79160000150"),
                "<premise ref=\"P-020\" role=\"tenant\"/>"
            ),
        ),
    );
    let report = db.import(&scattered).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.counts.premise.updated, 3, "{:?}", report.counts);
    assert_eq!(report.counts.account.unchanged, 3, "{:?}", report.counts);
    assert_eq!(report.counts.client.updated, 2, "{:?}", report.counts);
    let p = db.of_type(ORG, "premise").await;
    let moved_ids: Vec<&str> = p
        .iter()
        .filter(|p| p["address"].as_str().unwrap().ends_with("д. 2"))
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(moved_ids, ["P-010", "P-100", "P-190"]);
    let c150 = db.client(ORG, SRC, "C-150").await.unwrap();
    assert_eq!(c150["premises"][0]["id"], "P-020");
    assert_eq!(c150["premises"][0]["role"], "tenant");
    assert_eq!(c150["accounts"].as_array().unwrap().len(), 0);
    assert_eq!(
        db.client(ORG, SRC, "C-020").await.unwrap()["name"],
        "Клиентка 20"
    );
}
