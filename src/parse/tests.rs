use std::sync::Arc;

use super::*;
use crate::error::Code;
use crate::layout::Layout;
use crate::model::RawRecord;

fn read_all(xml: &[u8]) -> (Vec<Parsed>, Result<(), Box<Problem>>) {
    let mut reader = RecordReader::from_bytes(Arc::from("t.xml"), &Layout::native(), xml);
    let mut out = Vec::new();
    loop {
        match reader.read_record() {
            Ok(Some(p)) => out.push(p),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[test]
fn records_carry_line_column_and_index() {
    let xml = "<?xml version=\"1.0\"?>\n<crm-import version=\"1\">\n  <premises>\n    <premise id=\"P-1\"><address>Адрес</address><number>1</number></premise>\n  </premises>\n  <clients>\n      <client id=\"C-1\"><name>Ёж</name></client></clients>\n</crm-import>\n";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    assert_eq!(records.len(), 2);
    let p = &records[0].position;
    assert_eq!(
        (p.line, p.column, p.record_index, p.record_id.as_deref()),
        (4, 5, Some(1), Some("P-1"))
    );
    let c = &records[1].position;
    assert_eq!(
        (c.line, c.column, c.record_index, c.record_id.as_deref()),
        (7, 7, Some(2), Some("C-1"))
    );
    match &records[0].body {
        Ok(RawRecord::Premise(p)) => assert_eq!(p.address.as_deref(), Some("Адрес")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn indentation_of_any_kind_leaves_positions_and_field_text_as_written() {
    let xml = "<crm-import version=\"1\">\r\n\t<clients>\r\n\t\t \r\n\t\t<client id=\"C-1\">\r\n\t\t\t<name> \t А &amp; Б \r\n В </name>\r\n\t\t\t<phone>\r\n8 916 123-45-67\r\n</phone>\r\n\t\t</client>  <client id=\"C-2\"/>\r\n\t</clients>\r\n</crm-import>\r\n\r\n";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    let at: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (r.position.line, r.position.column))
        .collect();
    assert_eq!(at, vec![(4, 3), (10, 14)]);
    match &records[0].body {
        Ok(RawRecord::Client(c)) => {
            assert_eq!(c.name.as_deref(), Some("А & Б \n В"));
            assert_eq!(c.phone.as_deref(), Some("8 916 123-45-67"));
        }
        other => panic!("{other:?}"),
    }
}

/// Yields its text, then fails as a dropped connection would.
struct FailsAfter(&'static [u8]);

impl std::io::Read for FailsAfter {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = self.0.len().min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_read_failing_between_elements_keeps_the_records_before_it() {
    // ASCII only: a first Cyrillic letter makes the encoding sniffer read ahead, and the
    // failure would come before the record.
    let text = "<crm-import version=\"1\">\n<clients>\n  <client id=\"C-1\"><name>A</name></client>\n  \n  ";
    let mut reader = RecordReader::from_bytes(
        Arc::from("t.xml"),
        &Layout::native(),
        FailsAfter(text.as_bytes()),
    );
    let first = reader.read_record().unwrap().unwrap();
    assert_eq!(first.position.record_id.as_deref(), Some("C-1"));
    let problem = reader.read_record().unwrap_err();
    assert_eq!(problem.code, Code::SourceUnreadable, "{problem}");
    assert!(problem.message.contains("connection reset"), "{problem}");
    assert_eq!((problem.position.line, problem.position.column), (5, 3));
}

#[test]
fn entities_are_resolved_and_text_trimmed_after_assembly() {
    let xml = "<crm-import version=\"1\"><clients><client id=\"C&amp;1\"><name>  8 916 &lt;x&gt; &#1046;  </name></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    match &records[0].body {
        Ok(RawRecord::Client(c)) => {
            assert_eq!(c.id, "C&1");
            assert_eq!(c.name.as_deref(), Some("8 916 <x> Ж"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_entity_is_a_record_error_and_dtd_entities_are_not_expanded() {
    let xml = "<?xml version=\"1.0\"?><!DOCTYPE crm-import [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><crm-import version=\"1\"><clients><client id=\"C-1\"><name>&lol2;</name></client><client id=\"C-2\"><name>ok</name></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    assert_eq!(records.len(), 2);
    let problem = records[0].body.as_ref().unwrap_err();
    assert_eq!(problem.code, Code::UnknownEntity);
    assert_eq!(problem.field.as_deref(), Some("name"));
    assert!(records[1].body.is_ok());
}

#[test]
fn unknown_elements_and_attributes_are_warnings() {
    let xml = "<crm-import version=\"1\"><extra><deep/></extra><clients><client id=\"C-1\" color=\"red\"><name>A</name><nickname>B</nickname></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    let codes: Vec<(Code, &str)> = records[0]
        .warnings
        .iter()
        .map(|(w, _)| (w.code, w.key.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (Code::UnknownElement, "extra"),
            (Code::UnknownAttribute, "color"),
            (Code::UnknownElement, "nickname")
        ]
    );
    assert!(records[0].body.is_ok());
}

#[test]
fn a_field_tag_is_read_for_attributes_only_when_it_has_some() {
    let xml = "<crm-import version=\"1\"><clients><client id=\"C-1\"><name \t\r\n>A</name><phone lang=\"ru\">1</phone><email/></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    let keys: Vec<(Code, &str)> = records[0]
        .warnings
        .iter()
        .map(|(w, _)| (w.code, w.key.as_str()))
        .collect();
    assert_eq!(keys, vec![(Code::UnknownAttribute, "lang")]);
    match &records[0].body {
        Ok(RawRecord::Client(c)) => assert_eq!(
            (c.name.as_deref(), c.phone.as_deref()),
            (Some("A"), Some("1"))
        ),
        other => panic!("{other:?}"),
    }

    let twice = "<crm-import version=\"1\">\n<clients>\n<client id=\"C-1\" id=\"C-2\"/></clients></crm-import>";
    let problem = read_all(twice.as_bytes()).1.unwrap_err();
    assert_eq!((problem.code, problem.position.line), (Code::XmlSyntax, 3));
}

#[test]
fn a_field_over_the_limit_is_an_error_without_holding_it() {
    let long = "я".repeat(MAX_FIELD_CHARS + 1);
    let fits = "я".repeat(MAX_FIELD_CHARS);
    let xml = format!(
        "<crm-import version=\"1\"><clients><client id=\"C-1\"><name>{long}</name></client><client id=\"C-2\"><name>{fits}</name></client></clients></crm-import>"
    );
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    assert_eq!(
        records[0].body.as_ref().unwrap_err().code,
        Code::FieldTooLong
    );
    assert!(records[1].body.is_ok());
}

#[test]
fn html_page_is_recognised() {
    let (_, end) = read_all(b"<!DOCTYPE html>\n<html><head><title>Dropbox</title></head></html>");
    assert_eq!(end.unwrap_err().code, Code::HtmlInsteadOfXml);
    let (_, end) = read_all(b"<html><body>share</body></html>");
    assert_eq!(end.unwrap_err().code, Code::HtmlInsteadOfXml);
}

#[test]
fn truncated_document_keeps_the_records_before() {
    let xml = "<crm-import version=\"1\"><clients><client id=\"C-1\"><name>A</name></client><client id=\"C-2\"><na";
    let (records, end) = read_all(xml.as_bytes());
    assert_eq!(records.len(), 1);
    let problem = end.unwrap_err();
    assert!(
        matches!(problem.code, Code::Truncated | Code::XmlSyntax),
        "{problem}"
    );
}

#[test]
fn mismatched_end_tag_is_a_syntax_error_with_a_line() {
    let xml = "<crm-import version=\"1\">\n<clients>\n<client id=\"C-1\"><name>A</nam></client></clients></crm-import>";
    let (_, end) = read_all(xml.as_bytes());
    let problem = end.unwrap_err();
    assert_eq!(problem.code, Code::XmlSyntax);
    assert_eq!(problem.position.line, 3);
}

#[test]
fn wrong_root_and_version() {
    let (_, end) = read_all(b"<offers/>");
    assert_eq!(end.unwrap_err().code, Code::UnexpectedRoot);
    let (_, end) = read_all(b"<crm-import version=\"2\"/>");
    assert_eq!(end.unwrap_err().code, Code::UnsupportedVersion);
    let (_, end) = read_all(b"{\"json\": true}");
    assert_eq!(end.unwrap_err().code, Code::NotXml);
    let (_, end) = read_all(b"");
    assert_eq!(end.unwrap_err().code, Code::NotXml);
    let (_, end) =
        read_all(b"<?xml version=\"1.0\" encoding=\"KOI8-R\"?><crm-import version=\"1\"/>");
    assert_eq!(end.unwrap_err().code, Code::UnsupportedEncoding);
}

#[test]
fn missing_id_and_duplicate_field_are_record_errors() {
    let xml = "<crm-import version=\"1\"><clients><client><name>A</name></client><client id=\"C-2\"><name>A</name><name>B</name></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    assert_eq!(records[0].body.as_ref().unwrap_err().code, Code::MissingId);
    assert_eq!(
        records[1].body.as_ref().unwrap_err().code,
        Code::DuplicateField
    );
}

#[test]
fn links_of_a_client() {
    let xml = "<crm-import version=\"1\"><clients><client id=\"C-1\"><name>A</name><premise ref=\"P-1\" role=\"owner\"/><account ref=\"A-1\"></account><premise role=\"owner\"/></client></clients></crm-import>";
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    let problem = records[0].body.as_ref().unwrap_err();
    assert_eq!(
        (problem.code, problem.field.as_deref()),
        (Code::MissingField, Some("premise.ref"))
    );
}

#[test]
fn repeated_warnings_in_a_record_are_kept_once_with_their_count() {
    let mut xml = String::from("<crm-import version=\"1\"><clients><client id=\"C-1\">");
    for i in 0..10_000 {
        xml.push_str(&format!("<x{}/>", i % 100));
    }
    xml.push_str("</client></clients></crm-import>");
    let (records, end) = read_all(xml.as_bytes());
    end.unwrap();
    let warnings = &records[0].warnings;
    assert_eq!(warnings.total(), 10_000);
    let kept: Vec<(&str, u64)> = warnings.iter().map(|(w, n)| (w.key.as_str(), n)).collect();
    assert_eq!(kept.len(), 32);
    assert_eq!(kept[0], ("x0", 100));
    assert_eq!(warnings.more(), 6_800);
}

fn foreign(layout: &str) -> Layout {
    crate::layout::parse_text("test.toml", layout).unwrap()
}

fn read_with(layout: &Layout, bytes: &[u8]) -> (Vec<Parsed>, Result<(), Box<Problem>>) {
    let mut records = Records::open(
        Arc::from("t"),
        layout,
        std::io::Cursor::new(bytes.to_vec()),
        "read",
        || {},
    )
    .unwrap();
    let mut out = Vec::new();
    loop {
        match records.read_record() {
            Ok(Some(p)) => out.push(p),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[test]
fn a_foreign_xml_layout_reads_paths_attributes_joins_constants_and_links() {
    let layout = foreign(
        r#"
format = "xml"
[client]
record = "/Д/Люди/Человек"
id = "Код"
name = { join = ["ФИО/@Ф", "ФИО/@И"] }
phone = "Контакты/Телефон"
email = { value = "none@example.ru" }
premises = { each = "Помещение", ref = ".", role = { value = "owner" } }
accounts = { each = "Счета/Счет", ref = "@Н" }
"#,
    );
    let xml = "<Д><Шапка><Человек/></Шапка><Люди>\n<Человек><Лишнее a=\"1\"><Код>X</Код></Лишнее>\
        <Код> C-1 </Код><ФИО Ф=\"Иванов\" И=\"Иван\"/>\
        <Контакты><Телефон/><Телефон>8 912 000-00-01</Телефон><Телефон>8 912 000-00-02</Телефон></Контакты>\
        <Помещение>P-1</Помещение><Помещение>P-2</Помещение><Счета><Счет Н=\"A-1\"/></Счета></Человек>\
        </Люди></Д>";
    let (records, end) = read_with(&layout, xml.as_bytes());
    end.unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.position.line, r.position.record_id.as_deref()),
        (2, Some("C-1"))
    );
    // A foreign layout skips what it does not name, without warnings.
    assert!(r.warnings.is_empty());
    match &r.body {
        Ok(RawRecord::Client(c)) => {
            assert_eq!(c.name.as_deref(), Some("Иванов Иван"));
            assert_eq!(
                c.phone.as_deref(),
                Some("8 912 000-00-01"),
                "the first non-empty"
            );
            assert_eq!(c.email.as_deref(), Some("none@example.ru"));
            let links: Vec<(&str, Option<&str>)> = c
                .premises
                .iter()
                .map(|l| (l.premise.as_str(), l.role.as_deref()))
                .collect();
            assert_eq!(links, [("P-1", Some("owner")), ("P-2", Some("owner"))]);
            assert_eq!(c.accounts, ["A-1"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_foreign_root_is_named_and_a_record_without_its_id_says_where_the_id_was_looked_for() {
    let layout = foreign(
        "format = \"xml\"\n[client]\nrecord = \"/Д/Человек\"\nid = \"Код\"\nname = \"Имя\"\n",
    );
    let (_, end) = read_with(&layout, b"<crm-import version=\"1\"/>");
    let problem = end.unwrap_err();
    assert_eq!(problem.code, Code::UnexpectedRoot);
    assert!(problem.message.contains("<Д>"), "{problem}");
    let (records, end) = read_with(
        &layout,
        "<Д><Человек><Имя>Ёж</Имя></Человек></Д>".as_bytes(),
    );
    end.unwrap();
    let problem = records[0].body.as_ref().unwrap_err();
    assert_eq!(problem.code, Code::MissingId);
    assert!(problem.message.contains("Код"), "{problem}");
}

#[test]
fn csv_rows_of_one_premise_are_one_record_and_quoted_cells_keep_their_line_breaks() {
    let layout = foreign(
        r#"
format = "csv"
[premise]
id = "Код"
address = "Адрес"
number = "Номер"
[account]
id = "ЛС"
number = "Номер ЛС"
"#,
    );
    let csv = "Код,Адрес,Номер,ЛС,Номер ЛС\r\nP-1,\"Казань,\r\nул. Ленина\",1,A-1,11\r\nP-1,\"Казань,\r\nул. Ленина\",1,A-2,12\r\n\r\nP-2,Казань,2,,\r\n";
    let (records, end) = read_with(&layout, csv.as_bytes());
    end.unwrap();
    let lines: Vec<u64> = records.iter().map(|r| r.position.line).collect();
    assert_eq!(lines, [2, 7]);
    match &records[0].body {
        Ok(RawRecord::Premise(p)) => {
            assert_eq!(p.address.as_deref(), Some("Казань,\r\nул. Ленина"));
            let accounts: Vec<&str> = p.accounts.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(accounts, ["A-1", "A-2"]);
        }
        other => panic!("{other:?}"),
    }
    match &records[1].body {
        Ok(RawRecord::Premise(p)) => assert!(p.accounts.is_empty()),
        other => panic!("{other:?}"),
    }
    // Each record ends where its last row does; the next mark differs.
    assert_ne!(records[0].end, records[1].end);
}
