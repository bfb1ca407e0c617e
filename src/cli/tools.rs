//! `generate` and `schedule`: commands that need no database.

use std::path::PathBuf;

use super::output::{Failure, say};
use crate::generate;
use crate::schedule::Schedule;

/// `generate`: a deterministic export, to a file or standard output.
pub fn generate(spec: generate::Spec, out: Option<PathBuf>) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new(spec.premises + spec.clients);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} records, {per_sec}, ETA {eta}",
    ) {
        bar.set_style(style);
    }
    let written = match &out {
        Some(path) => std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            generate::write(spec, &mut w, |n| bar.set_position(n))
        }),
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            generate::write(spec, &mut w, |n| bar.set_position(n))
        }
    };
    bar.finish_and_clear();
    written.map_err(|e| Failure::import(format!("writing the export failed: {e}")))
}

/// `schedule`: the next run times of a schedule, in its zone and in UTC.
pub fn schedule(
    expression: &str,
    tz: &str,
    next: u16,
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> Result<(), Failure> {
    let schedule =
        Schedule::parse(expression, Some(tz)).map_err(|e| Failure::config(e.to_string()))?;
    let from = from.map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
    let mut out = String::new();
    for run in schedule.upcoming(from, usize::from(next)) {
        out.push_str(&format!(
            "{} ({} UTC)\n",
            run.format("%Y-%m-%d %H:%M %a %:z"),
            run.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M")
        ));
    }
    say(&out);
    Ok(())
}
