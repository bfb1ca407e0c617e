//! Phone numbers to E.164 with libphonenumber's rules (default region RU).
//!
//! rlibphonenumber is used because it keeps Russian area codes that begin with 8
//! (`8 (843) …`, `8 800 …`) intact; the `phonenumber` crate truncates them.

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};

/// `8 (912) 345-67-89` → `+79123456789`. `None` when the text is not a valid number.
pub fn normalize(raw: &str) -> Option<String> {
    let number = PhoneNumber::parse(raw, Some(Region::RU)).ok()?;
    if !number.is_valid() {
        return None;
    }
    Some(number.format_as(PhoneNumberFormat::E164).into_owned())
}

#[cfg(test)]
mod tests {
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
}
