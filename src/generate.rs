//! Deterministic, realistic exports for benchmarks, demos and tests: Russian names and
//! addresses, optional fields at the rates real 1C exports have, phones spelled the way
//! people type them. Output is streamed, so ten million records take flat memory.

use std::io::{self, Write};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CITIES: [&str; 6] = [
    "Казань",
    "Санкт-Петербург",
    "Москва",
    "Набережные Челны",
    "Екатеринбург",
    "Нижний Новгород",
];
/// Landline area codes matching `CITIES` (843 and 812 begin with 8, the trap for parsers).
const AREA_CODES: [&str; 6] = ["843", "812", "495", "8552", "343", "831"];
const STREETS: [&str; 16] = [
    "ул. Ленина",
    "ул. Баумана",
    "пр. Победы",
    "ул. Пушкина",
    "ул. Гагарина",
    "ул. Карла Маркса",
    "Невский пр.",
    "ул. Чистопольская",
    "ул. Академика Королёва",
    "ул. Мира",
    "ул. Садовая",
    "Московский пр.",
    "ул. Декабристов",
    "бульвар Ямашева",
    "ул. Советская",
    "наб. реки Фонтанки",
];
const SURNAMES: [&str; 20] = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
];
const TATAR_SURNAMES: [&str; 8] = [
    "Хабибуллин",
    "Сафин",
    "Галиев",
    "Шарипов",
    "Валиев",
    "Гарипов",
    "Зарипов",
    "Мухаметзянов",
];
const MALE_NAMES: [&str; 14] = [
    "Иван",
    "Алексей",
    "Сергей",
    "Дмитрий",
    "Андрей",
    "Михаил",
    "Никита",
    "Павел",
    "Ринат",
    "Айдар",
    "Тимур",
    "Артём",
    "Олег",
    "Юрий",
];
const FEMALE_NAMES: [&str; 14] = [
    "Мария",
    "Анна",
    "Елена",
    "Ольга",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Гульнара",
    "Алсу",
    "Дарья",
    "Светлана",
    "Юлия",
    "Екатерина",
    "Лилия",
];
const FATHERS: [&str; 10] = [
    "Иван",
    "Пётр",
    "Сергей",
    "Александр",
    "Марат",
    "Ильдар",
    "Николай",
    "Владимир",
    "Рустем",
    "Михаил",
];
const MOBILE_CODES: [&str; 12] = [
    "912", "916", "917", "903", "905", "926", "937", "950", "960", "987", "999", "919",
];
const MAIL_DOMAINS: [&str; 5] = ["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub premises: u64,
    pub clients: u64,
    pub seed: u64,
}

/// Writes a whole export. `progress` is called with the records written so far every few
/// thousand records.
pub fn write(spec: Spec, out: &mut impl Write, mut progress: impl FnMut(u64)) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut line = String::with_capacity(2048);
    out.write_all(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<crm-import version=\"1\">\n  <premises>\n",
    )?;
    for i in 0..spec.premises {
        line.clear();
        premise(&mut rng, i, &mut line);
        out.write_all(line.as_bytes())?;
        if i % 4096 == 0 {
            progress(i);
        }
    }
    out.write_all(b"  </premises>\n  <clients>\n")?;
    for i in 0..spec.clients {
        line.clear();
        client(&mut rng, i, spec.premises, &mut line);
        out.write_all(line.as_bytes())?;
        if i % 4096 == 0 {
            progress(spec.premises + i);
        }
    }
    out.write_all(b"  </clients>\n</crm-import>\n")?;
    progress(spec.premises + spec.clients);
    out.flush()
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Premises sit in houses of 120 flats; a house's address is a function of its number.
fn house(i: u64) -> (usize, &'static str, u64) {
    let house = i / 120;
    let city = (house % CITIES.len() as u64) as usize;
    let street = STREETS[((house / 6) % STREETS.len() as u64) as usize];
    (city, street, house / 96 + 1)
}

fn premise(rng: &mut ChaCha8Rng, i: u64, s: &mut String) {
    use std::fmt::Write as _;
    let (city, street, number) = house(i);
    let flat = i % 120 + 1;
    let kind = match rng.random_range(0..100) {
        0..90 => "flat",
        90..94 => "non_residential",
        94..98 => "parking",
        _ => "storage",
    };
    let _ = write!(
        s,
        "    <premise id=\"P-{i:08}\">\n      <address>{}, {street}, д. {number}</address>\n",
        CITIES[city]
    );
    let prefix = match kind {
        "parking" => "М-",
        "storage" => "К-",
        "non_residential" => "Н-",
        _ => "",
    };
    let letter = if rng.random_ratio(1, 40) { "А" } else { "" };
    let _ = writeln!(s, "      <number>{prefix}{flat}{letter}</number>");
    if kind != "flat" || rng.random_ratio(1, 3) {
        let _ = writeln!(s, "      <kind>{kind}</kind>");
    }
    if rng.random_ratio(9, 10) {
        let floor = if kind == "parking" {
            -1
        } else {
            (flat as i64 - 1) / 4 % 16 + 1
        };
        let _ = writeln!(s, "      <floor>{floor}</floor>");
    }
    if rng.random_ratio(8, 10) {
        let _ = writeln!(s, "      <entrance>{}</entrance>", (flat - 1) / 64 + 1);
    }
    let area = area(rng, kind);
    if rng.random_ratio(19, 20) {
        let _ = writeln!(s, "      <area>{}</area>", decimal(area));
    }
    if kind == "flat" && rng.random_ratio(17, 20) {
        let _ = writeln!(s, "      <rooms>{}</rooms>", rng.random_range(1..=4));
    }
    if rng.random_ratio(3, 5) {
        let _ = writeln!(
            s,
            "      <cadastral-number>16:50:{:06}:{}</cadastral-number>",
            (i / 120) % 1_000_000,
            i % 100_000 + 1
        );
    }
    let _ = write!(
        s,
        "      <accounts>\n        <account id=\"A-{i:08}\">\n          <number>{}</number>\n",
        1_100_000_000 + i
    );
    if rng.random_ratio(7, 10) {
        let _ = writeln!(s, "          <area>{}</area>", decimal(area));
    }
    if rng.random_ratio(4, 5) {
        let _ = writeln!(
            s,
            "          <residents>{}</residents>",
            rng.random_range(0..=5)
        );
    }
    s.push_str("        </account>\n      </accounts>\n    </premise>\n");
}

fn area(rng: &mut ChaCha8Rng, kind: &str) -> f64 {
    let tenths = match kind {
        "parking" => rng.random_range(130..=180),
        "storage" => rng.random_range(20..=80),
        "non_residential" => rng.random_range(300..=2500),
        _ => rng.random_range(280..=1200),
    };
    tenths as f64 / 10.0
}

/// 1C writes decimals with a point (a hand-edited comma is accepted too, see demo.xml, but
/// the peer importer this is benchmarked against does not read it).
fn decimal(value: f64) -> String {
    format!("{value:.1}")
}

fn client(rng: &mut ChaCha8Rng, i: u64, premises: u64, s: &mut String) {
    use std::fmt::Write as _;
    let female = rng.random_bool(0.5);
    let surname = if rng.random_ratio(1, 4) {
        pick(rng, &TATAR_SURNAMES)
    } else {
        pick(rng, &SURNAMES)
    };
    let (name, ending, patronymic_ending) = if female {
        (pick(rng, &FEMALE_NAMES), "а", "вна")
    } else {
        (pick(rng, &MALE_NAMES), "", "вич")
    };
    let father = pick(rng, &FATHERS);
    let patronymic = patronymic(father, patronymic_ending);
    let _ = write!(
        s,
        "    <client id=\"C-{i:08}\">\n      <name>{surname}{ending} {name} {patronymic}</name>\n"
    );
    if rng.random_ratio(19, 20) {
        let _ = writeln!(s, "      <phone>{}</phone>", phone(rng, i, premises));
    }
    if rng.random_ratio(3, 10) {
        let _ = writeln!(
            s,
            "      <email>{}{}@{}</email>",
            translit_prefix(i),
            i,
            pick(rng, &MAIL_DOMAINS)
        );
    }
    if premises > 0 {
        let target = i % premises;
        let role = match rng.random_range(0..100) {
            0..70 => "owner",
            70..85 => "tenant",
            _ => "resident",
        };
        let _ = write!(
            s,
            "      <premise ref=\"P-{target:08}\" role=\"{role}\"/>\n      <account ref=\"A-{target:08}\"/>\n"
        );
    }
    s.push_str("    </client>\n");
}

fn patronymic(father: &str, ending: &str) -> String {
    match father {
        "Пётр" => format!("Петро{ending}"),
        "Михаил" => format!("Михайло{ending}"),
        other => match other.strip_suffix('й') {
            Some(stem) => format!("{stem}е{ending}"),
            None => format!("{other}о{ending}"),
        },
    }
}

fn translit_prefix(i: u64) -> &'static str {
    ["ivanov", "petrova", "r.safin", "olga", "mail", "kzn"][(i % 6) as usize]
}

/// A unique phone per client index, in one of the spellings people type: mobiles mostly,
/// city landlines (843, 812 …) and a few 8-800 numbers of companies.
fn phone(rng: &mut ChaCha8Rng, i: u64, premises: u64) -> String {
    // 7919 is coprime to 10^7, so the subscriber part is unique for each index within a code.
    let subscriber = (i.wrapping_mul(7919).wrapping_add(1_234_567)) % 10_000_000;
    let (code, rest) = match rng.random_range(0..100) {
        0..85 => (
            MOBILE_CODES[(i % MOBILE_CODES.len() as u64) as usize].to_owned(),
            subscriber,
        ),
        85..97 => {
            let (city, _, _) = house(i % premises.max(1));
            let code = AREA_CODES[city];
            // Landlines start with 2–5 after the area code; keep 10 digits in all.
            let digits = 10 - code.len() as u32;
            let span = 10u64.pow(digits - 1);
            (code.to_owned(), (2 + (i % 4)) * span + subscriber % span)
        }
        _ => ("800".to_owned(), 1_000_000 + subscriber % 9_000_000),
    };
    let national = format!("{code}{rest:0width$}", width = 10 - code.len());
    let (a, b) = national.split_at(3);
    let (b, c) = b.split_at(3);
    let (c, d) = c.split_at(2);
    match rng.random_range(0..6) {
        0 => format!("8 ({a}) {b}-{c}-{d}"),
        1 => format!("+7 {a} {b} {c} {d}"),
        2 => format!("7{national}"),
        3 => national,
        4 => format!("8-{a}-{b}-{c}-{d}"),
        _ => format!("+7({a}){b}{c}{d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(premises: u64, clients: u64, seed: u64) -> String {
        let mut out = Vec::new();
        write(
            Spec {
                premises,
                clients,
                seed,
            },
            &mut out,
            |_| {},
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(generated(50, 50, 7), generated(50, 50, 7));
        assert_ne!(generated(50, 50, 7), generated(50, 50, 8));
    }

    #[test]
    fn every_generated_phone_is_valid_and_unique() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            let raw = phone(&mut rng, i, 20_000);
            let e164 =
                crate::phone::normalize(&raw).unwrap_or_else(|| panic!("{raw} is not valid"));
            assert!(seen.insert(e164.clone()), "{raw} → {e164} repeats");
        }
    }
}
