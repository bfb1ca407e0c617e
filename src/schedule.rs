//! When a pipeline runs: five fields `minute hour day month weekday` on a pipeline's clock.
//!
//! The seed's rule is that `*` ignores a field and every other field must match — so
//! `0 3 13 * 5` is 03:00 on Friday the 13th only. Classic cron ORs the day of month and the
//! day of week when both are restricted ("the 13th, and every Friday"); here they are ANDed.
//! croner does the calendar arithmetic (month ends, leap years, time zones, DST); this module
//! fixes its options to the seed's rule.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A checked schedule with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule {0:?} must have five fields: minute hour day month weekday (e.g. \"0 3 * * *\")"
    )]
    FieldCount(String),
    #[error("schedule {text:?}: {message}")]
    Invalid { text: String, message: String },
    #[error("time zone {0:?} is not an IANA name such as Europe/Moscow or UTC")]
    TimeZone(String),
}

impl Schedule {
    /// Parses `minute hour day month weekday`; `tz` defaults to UTC.
    pub fn parse(text: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if text.split_whitespace().count() != 5 || text.contains('@') {
            return Err(ScheduleError::FieldCount(text.to_owned()));
        }
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::TimeZone(name.to_owned()))?,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| ScheduleError::Invalid {
                text: text.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Schedule {
            cron,
            tz,
            text: text.to_owned(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
    }

    /// The schedule as a person reads it, in Russian («каждый день в 03:00»). Fields that
    /// are `*` or lists of numbers are put in words; anything else (ranges, steps) is shown
    /// as written.
    pub fn describe(&self) -> String {
        describe(&self.text).unwrap_or_else(|| format!("по расписанию «{}»", self.text))
    }

    /// The next `n` runs strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.cron
            .iter_after(after.with_timezone(&self.tz))
            .take(n)
            .collect()
    }
}

/// A field's numbers, or `None` for `*`; `Err` for what is not a plain list.
fn numbers(field: &str) -> Result<Option<Vec<u32>>, ()> {
    if field == "*" {
        return Ok(None);
    }
    field
        .split(',')
        .map(|n| n.parse::<u32>().map_err(|_| ()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn listed(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} и {last}", init.join(", ")),
    }
}

fn describe(text: &str) -> Option<String> {
    const WEEKDAYS: [&str; 7] = [
        "воскресеньям",
        "понедельникам",
        "вторникам",
        "средам",
        "четвергам",
        "пятницам",
        "субботам",
    ];
    const MONTHS: [&str; 12] = [
        "январе",
        "феврале",
        "марте",
        "апреле",
        "мае",
        "июне",
        "июле",
        "августе",
        "сентябре",
        "октябре",
        "ноябре",
        "декабре",
    ];
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return None;
    };
    let (minute, hour) = (numbers(minute).ok()?, numbers(hour).ok()?);
    let (day, month, weekday) = (
        numbers(day).ok()?,
        numbers(month).ok()?,
        numbers(weekday).ok()?,
    );
    let time = match (&hour, &minute) {
        (None, None) => "каждую минуту".to_owned(),
        (None, Some(minutes)) => {
            let minutes: Vec<String> = minutes.iter().map(|m| format!("{m:02}")).collect();
            format!("каждый час в {} мин.", listed(&minutes))
        }
        (Some(_), None) => return None,
        (Some(hours), Some(minutes)) => {
            let times: Vec<String> = hours
                .iter()
                .flat_map(|h| minutes.iter().map(move |m| format!("{h:02}:{m:02}")))
                .collect();
            format!("в {}", listed(&times))
        }
    };
    let mut when = Vec::new();
    match &day {
        None if weekday.is_none() && hour.is_some() => when.push("каждый день".to_owned()),
        None => {}
        Some(days) => {
            let days: Vec<String> = days.iter().map(|d| format!("{d}-го")).collect();
            when.push(format!("{} числа", listed(&days)));
        }
    }
    if let Some(weekdays) = &weekday {
        let names = weekdays
            .iter()
            .map(|d| WEEKDAYS.get(*d as usize % 7).map(|w| (*w).to_owned()))
            .collect::<Option<Vec<_>>>()?;
        when.push(format!("по {}", listed(&names)));
    }
    if let Some(months) = &month {
        let names = months
            .iter()
            .map(|m| {
                MONTHS
                    .get((*m as usize).checked_sub(1)?)
                    .map(|n| (*n).to_owned())
            })
            .collect::<Option<Vec<_>>>()?;
        when.push(format!("в {}", listed(&names)));
    }
    let days = when.join(", ");
    Some(match (days.is_empty(), hour.is_some()) {
        (true, _) => time,
        (false, true) => format!("{days} {time}"),
        (false, false) => format!("{days}, {time}"),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<String> {
        s.upcoming(from, n)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M %a %:z").to_string())
            .collect()
    }

    #[test]
    fn schedules_in_words() {
        let words = |text: &str| Schedule::parse(text, None).unwrap().describe();
        assert_eq!(words("0 3 * * *"), "каждый день в 03:00");
        assert_eq!(words("30 8,20 * * *"), "каждый день в 08:30 и 20:30");
        assert_eq!(words("19 * * * *"), "каждый час в 19 мин.");
        assert_eq!(words("0 3 * * 1,5"), "по понедельникам и пятницам в 03:00");
        assert_eq!(words("0 3 13 * 5"), "13-го числа, по пятницам в 03:00");
        assert_eq!(words("0 4 1 1 *"), "1-го числа, в январе в 04:00");
        assert_eq!(words("*/15 * * * *"), "по расписанию «*/15 * * * *»");
    }

    #[test]
    fn the_seeds_examples() {
        let hourly = Schedule::parse("19 * * * *", None).unwrap();
        assert_eq!(
            local(&hourly, utc(2026, 11, 28, 10, 5), 3),
            [
                "2026-11-28 10:19 Sat +00:00",
                "2026-11-28 11:19 Sat +00:00",
                "2026-11-28 12:19 Sat +00:00"
            ]
        );
        let daily = Schedule::parse("19 22 * * *", None).unwrap();
        assert_eq!(
            local(&daily, utc(2026, 11, 28, 22, 19), 2),
            ["2026-11-29 22:19 Sun +00:00", "2026-11-30 22:19 Mon +00:00"]
        );
        let nightly = Schedule::parse("0 3 * * *", Some("Europe/Moscow")).unwrap();
        assert_eq!(
            local(&nightly, utc(2026, 11, 28, 18, 0), 1),
            ["2026-11-29 03:00 Sun +03:00"]
        );
        assert_eq!(
            nightly
                .next_after(utc(2026, 11, 28, 18, 0))
                .unwrap()
                .with_timezone(&Utc),
            utc(2026, 11, 29, 0, 0)
        );
    }

    #[test]
    fn comma_lists_ranges_and_steps() {
        let s = Schedule::parse("0,30 8,20 * * 1-5", None).unwrap();
        assert_eq!(
            local(&s, utc(2026, 11, 27, 20, 15), 3),
            [
                "2026-11-27 20:30 Fri +00:00",
                "2026-11-30 08:00 Mon +00:00",
                "2026-11-30 08:30 Mon +00:00"
            ]
        );
        let every_15 = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            local(&every_15, utc(2026, 1, 1, 0, 50), 2),
            ["2026-01-01 01:00 Thu +00:00", "2026-01-01 01:15 Thu +00:00"]
        );
    }

    #[test]
    fn day_and_weekday_must_both_match() {
        // Classic cron would run on every 13th and every Friday; the seed's rule: Friday the 13th.
        let s = Schedule::parse("0 3 13 * 5", None).unwrap();
        assert_eq!(
            local(&s, utc(2026, 1, 1, 0, 0), 3),
            [
                "2026-02-13 03:00 Fri +00:00",
                "2026-03-13 03:00 Fri +00:00",
                "2026-11-13 03:00 Fri +00:00"
            ]
        );
    }

    #[test]
    fn month_ends_and_leap_years() {
        let s = Schedule::parse("0 0 31 * *", None).unwrap();
        assert_eq!(
            local(&s, utc(2026, 3, 31, 12, 0), 2),
            ["2026-05-31 00:00 Sun +00:00", "2026-07-31 00:00 Fri +00:00"]
        );
        let leap = Schedule::parse("0 0 29 2 *", None).unwrap();
        assert_eq!(
            local(&leap, utc(2026, 1, 1, 0, 0), 2),
            ["2028-02-29 00:00 Tue +00:00", "2032-02-29 00:00 Sun +00:00"]
        );
    }

    #[test]
    fn a_dst_zone_keeps_the_wall_clock() {
        let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        // Summer time starts on 2027-03-28: 03:00 is +01:00 before and +02:00 after.
        assert_eq!(
            local(&s, utc(2027, 3, 26, 12, 0), 3),
            [
                "2027-03-27 03:00 Sat +01:00",
                "2027-03-28 03:00 Sun +02:00",
                "2027-03-29 03:00 Mon +02:00"
            ]
        );
        // 02:30 does not exist on that night; the run moves past the gap, it is not lost.
        let gap = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let runs = local(&gap, utc(2027, 3, 27, 12, 0), 2);
        assert!(runs[0].starts_with("2027-03-28 03:"), "{runs:?}");
        assert_eq!(runs[1], "2027-03-29 02:30 Mon +02:00");
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        assert!(matches!(
            Schedule::parse("0 3 * *", None),
            Err(ScheduleError::FieldCount(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 3 * * *", None),
            Err(ScheduleError::FieldCount(_))
        ));
        assert!(matches!(
            Schedule::parse("@daily", None),
            Err(ScheduleError::FieldCount(_))
        ));
        assert!(matches!(
            Schedule::parse("61 3 * * *", None),
            Err(ScheduleError::Invalid { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 3 * * *", Some("Moscow")),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
