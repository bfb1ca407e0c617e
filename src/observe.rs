//! What watches a run without steering it: progress bars now, metrics later. The pipeline
//! calls these hooks; every one defaults to doing nothing.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub trait Observer: Send + Sync {
    /// A file was opened; `size` in bytes when the source knows it.
    fn file_started(&self, _name: &str, _size: Option<u64>) {}
    /// Raw bytes of the current file were read.
    fn bytes_read(&self, _n: u64) {}
    /// Records were applied (committed).
    fn records_applied(&self, _n: u64) {}
    /// The current file is done, however it ended.
    fn file_finished(&self) {}
}

/// Observes nothing.
pub struct Silent;

impl Observer for Silent {}

/// Reports the bytes that pass through it.
pub struct Counted<R> {
    inner: R,
    observer: Arc<dyn Observer>,
}

impl<R> Counted<R> {
    pub fn new(inner: R, observer: Arc<dyn Observer>) -> Self {
        Counted { inner, observer }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observer.bytes_read(n as u64);
        Ok(n)
    }
}

/// Progress bars on a terminal (indicatif hides them elsewhere): bytes with the total
/// where known, records per second, time left.
pub struct ProgressBars {
    bar: indicatif::ProgressBar,
}

impl ProgressBars {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, ETA {eta}",
            )
            .expect("a valid progress template"),
        );
        ProgressBars { bar }
    }
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for ProgressBars {
    fn file_started(&self, name: &str, size: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(size.unwrap_or(0));
        self.bar.set_message(name.to_owned());
    }

    fn bytes_read(&self, n: u64) {
        self.bar.inc(n);
    }

    fn file_finished(&self) {
        self.bar.finish_and_clear();
    }
}

/// A run's live progress, for the console: records committed since it started. Everything
/// it observes is passed on to `inner` too.
pub struct Progress {
    inner: Arc<dyn Observer>,
    records: AtomicU64,
    started: Instant,
}

impl Progress {
    pub fn new(inner: Arc<dyn Observer>) -> Self {
        Progress {
            inner,
            records: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Records committed so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Observer for Progress {
    fn file_started(&self, name: &str, size: Option<u64>) {
        self.inner.file_started(name, size);
    }

    fn bytes_read(&self, n: u64) {
        self.inner.bytes_read(n);
    }

    fn records_applied(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
        self.inner.records_applied(n);
    }

    fn file_finished(&self) {
        self.inner.file_finished();
    }
}
