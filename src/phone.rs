//! Phone numbers to E.164 with libphonenumber's rules (default region RU).
//!
//! rlibphonenumber is used because it keeps Russian area codes that begin with 8
//! (`8 (843) …`, `8 800 …`) intact; the `phonenumber` crate truncates them.

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};

/// `8 (912) 345-67-89` → `+79123456789`. `None` when the text is not a valid number.
pub fn normalize(raw: &str) -> Option<String> {
    let number = match russian(raw) {
        // Russia is the first region of +7 that libphonenumber tries, so a number valid
        // there is valid: checked against Russia alone, it is matched once, not twice.
        Some(number) if number.is_valid_for_region(Region::RU) => number,
        _ => PhoneNumber::parse(raw, Some(Region::RU))
            .ok()
            .filter(PhoneNumber::is_valid)?,
    };
    Some(number.format_as(PhoneNumberFormat::E164).into_owned())
}

/// The number a plain Russian spelling names — ten digits after `+7`, `7` or `8`, or alone,
/// grouped by spaces, hyphens and parentheses — read without libphonenumber's parser, whose
/// regular expressions took a twentieth of a re-import's instructions. What this reads as
/// valid is what the parser reads (the national prefix 8 and the country code 7 are stripped
/// the same way; the tests below check it against libphonenumber alone); anything else goes
/// to the parser.
fn russian(raw: &str) -> Option<PhoneNumber> {
    let mut digits = 0u64;
    let mut count = 0;
    let mut plus = false;
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'0'..=b'9' => {
                count += 1;
                if count > 11 {
                    return None;
                }
                digits = digits * 10 + u64::from(c - b'0');
            }
            b'+' if i == 0 => plus = true,
            b' ' | b'-' | b'(' | b')' => {}
            _ => return None,
        }
    }
    let national = match (plus, count) {
        (false, 10) => digits,
        (true, 11) if digits / 10_000_000_000 == 7 => digits % 10_000_000_000,
        (false, 11) if matches!(digits / 10_000_000_000, 7 | 8) => digits % 10_000_000_000,
        _ => return None,
    };
    Some(PhoneNumber {
        country_code: 7,
        national_number: national,
        ..PhoneNumber::default()
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};

    use super::normalize;

    #[test]
    fn russian_spellings() {
        for (raw, e164) in [
            ("8 (912) 345-67-89", "+79123456789"),
            ("+7 912 345 67 89", "+79123456789"),
            ("79123456789", "+79123456789"),
            ("9123456789", "+79123456789"),
            ("8 (843) 224-72-71", "+78432247271"),
            ("8 800 555-35-35", "+78005553535"),
            ("8 (812) 315-17-01", "+78123151701"),
            ("+44 20 7946 0958", "+442079460958"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Some(e164), "{raw}");
        }
    }

    #[test]
    fn rubbish_is_refused() {
        for raw in ["12345", "звоните вечером", "+7 000 000 00 00", ""] {
            assert_eq!(normalize(raw), None, "{raw}");
        }
    }

    /// Spellings near the plain Russian ones: each prefix the parser treats specially
    /// (`+7`, `7`, `8`, the international `810`, other country codes), 8 to 12 digits that
    /// start where Russian and Kazakh numbers do and where they don't, separators anywhere.
    fn spelling() -> impl Strategy<Value = String> {
        let prefix = prop::sample::select(vec!["", "+", "+7", "7", "8", "+8", "810", "+44"]);
        let digits = prop::collection::vec(0u8..10, 8..13);
        let separators = prop::collection::vec(
            prop::sample::select(vec!["", "", "", " ", "-", "(", ")", " (", ") "]),
            13,
        );
        (prefix, digits, separators).prop_map(|(prefix, digits, separators)| {
            let mut s = prefix.to_owned();
            for (d, sep) in digits.iter().zip(&separators) {
                s.push_str(sep);
                s.push(char::from(b'0' + d));
            }
            s
        })
    }

    /// Every four-digit start of a ten-digit number, in each plain spelling: the shortcut
    /// and libphonenumber alone agree on all of them, whether Russian, Kazakh or invalid.
    #[test]
    fn every_national_prefix_agrees_with_libphonenumber() {
        let (mut russian, mut kazakh) = (0, 0);
        for start in 1000u64..10_000 {
            let national = start * 1_000_000 + (start * 7919) % 1_000_000;
            for raw in [
                format!("+7{national}"),
                format!("7{national}"),
                format!("8{national}"),
                format!("{national}"),
            ] {
                let e164 = normalize(&raw);
                assert_eq!(e164, libphonenumber(&raw), "{raw}");
                match e164.as_deref().and_then(|n| n.get(..3)) {
                    Some("+77") => kazakh += 1,
                    Some(_) => russian += 1,
                    None => {}
                }
            }
        }
        // Both ways were taken: Russian numbers by the shortcut, Kazakh ones by the parser.
        assert!(
            russian > 5000 && kazakh > 500,
            "{russian} Russian, {kazakh} Kazakh"
        );
    }

    /// What libphonenumber alone makes of `raw`.
    fn libphonenumber(raw: &str) -> Option<String> {
        PhoneNumber::parse(raw, Some(Region::RU))
            .ok()
            .filter(PhoneNumber::is_valid)
            .map(|n| n.format_as(PhoneNumberFormat::E164).into_owned())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The shortcut for plain Russian spellings reads every spelling as libphonenumber
        /// alone does.
        #[test]
        fn parse_agrees_with_libphonenumber(raw in spelling()) {
            prop_assert_eq!(normalize(&raw), libphonenumber(&raw));
        }
    }
}
