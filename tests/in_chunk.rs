//! Records inside one chunk that touch each other give the one-by-one result: the bulk
//! path resolves the matching table in memory, so these pin its in-chunk state.

use crate::common::*;

const P: &str = "+79123456789";
const Q: &str = "+79161234567";

/// Imports `xml` at several chunk sizes and as one record per transaction; every export
/// and every error must be the same.
async fn same_at_every_chunk_size(setup: &str, xml: &str) -> String {
    let mut seen: Option<(String, Option<String>)> = None;
    for chunk in [1, 2, 3, 1000] {
        let db = Db::new().await;
        if !setup.is_empty() {
            let report = db.import(setup).await;
            assert!(report.is_ok(), "{}", report.summary());
        }
        let path = db.file(xml);
        let report = db.import_files(ORG, SRC, &[path], chunk).await;
        let got = (
            db.export(ORG).await,
            report
                .error
                .as_ref()
                .map(|e| format!("{} at {:?}", e.code, e.record_index)),
        );
        match &seen {
            None => seen = Some(got),
            Some(first) => assert_eq!(&got, first, "chunk size {chunk}"),
        }
    }
    seen.unwrap().0
}

#[tokio::test]
async fn the_same_phone_twice_in_a_chunk_adds_the_second_id() {
    let xml = doc(
        "",
        &format!(
            "{}{}",
            client("C-1", "Иванов", Some(P), ""),
            client("C-2", "Иванов И.", Some(P), "")
        ),
    );
    let export = same_at_every_chunk_size("", &xml).await;
    assert_eq!(export.lines().count(), 1, "{export}");
    assert!(
        export
            .contains(r#""external_ids":[{"source":"1c","id":"C-1"},{"source":"1c","id":"C-2"}]"#),
        "{export}"
    );
}

#[tokio::test]
async fn a_merge_inside_a_chunk() {
    // C-2 is created with P in this chunk, then C-1 moves to P: C-2 is glued into C-1.
    let setup = doc("", &client("C-1", "Иванов", Some(Q), ""));
    let xml = doc(
        "",
        &format!(
            "{}{}{}",
            client("C-2", "Петров", Some(P), ""),
            client("C-1", "Иванов", Some(P), ""),
            client("C-3", "Сидоров", Some(Q), "")
        ),
    );
    let export = same_at_every_chunk_size(&setup, &xml).await;
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 2, "{export}");
    assert!(
        lines[0].contains(r#""phone":"+79123456789""#)
            && lines[0].contains(r#"{"source":"1c","id":"C-2"}"#),
        "{export}"
    );
    // Q went to C-1's history with the merge, so C-3 could still be created with it (case 4).
    assert!(lines[1].contains(r#""name":"Сидоров""#), "{export}");
}

#[tokio::test]
async fn a_reference_to_a_premise_earlier_in_the_chunk() {
    let xml = doc(
        &format!(
            "{}{}",
            premise("P-1", &[("A-1", "1001")]),
            premise("P-2", &[])
        ),
        &client(
            "C-1",
            "Иванов",
            Some(P),
            "<premise ref=\"P-2\" role=\"owner\"/><account ref=\"A-1\"/>",
        ),
    );
    let export = same_at_every_chunk_size("", &xml).await;
    assert!(
        export.contains(r#""premises":[{"source":"1c","id":"P-2","role":"owner"}]"#),
        "{export}"
    );
}

#[tokio::test]
async fn a_phone_change_then_its_old_phone_in_the_same_chunk() {
    // C-1 leaves P (history); C-2 then asks for P: refused exactly as one by one.
    let setup = doc(
        "",
        &format!(
            "{}{}",
            client("C-1", "Иванов", Some(P), ""),
            client("C-2", "Петров", None, "")
        ),
    );
    let xml = doc(
        "",
        &format!(
            "{}{}",
            client("C-1", "Иванов", Some(Q), ""),
            client("C-2", "Петров", Some(P), "")
        ),
    );
    same_at_every_chunk_size(&setup, &xml).await;
}

#[tokio::test]
async fn accounts_swapping_numbers_through_a_free_one() {
    let setup = doc(&premise("P-1", &[("A-1", "1"), ("A-2", "2")]), "");
    let xml = doc(
        &format!(
            "{}{}{}",
            premise("P-1", &[("A-1", "3"), ("A-2", "2")]),
            premise("P-1", &[("A-1", "3"), ("A-2", "1")]),
            premise("P-1", &[("A-1", "2"), ("A-2", "1")])
        ),
        "",
    );
    let export = same_at_every_chunk_size(&setup, &xml).await;
    assert!(
        export.contains(r#""id":"A-1","premise_id":"P-1","number":"2""#),
        "{export}"
    );
}
