//! The buffered reader under the XML tokenizer, which also knows the line and column of
//! any position it was asked to mark.
//!
//! quick-xml reports byte offsets; people need "line 240, column 5". Counting every byte
//! as the tokenizer consumes it would cost more than tokenizing, so counting is lazy: the
//! parser marks where each event starts (a store of one integer) and asks for the line and
//! column only at record starts and errors. Bytes are counted once, with memchr, just
//! before the buffer drops them, so memory stays one buffer whatever the file size.

use std::io::{self, BufRead, Read};

use quick_xml::utils::is_whitespace;

/// A 1-based line and a 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: u64,
    pub column: u64,
}

pub struct LineCounter<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Consumed up to here; filled up to `end`.
    start: usize,
    end: usize,
    /// Line and characters since the last newline, as of `buf[..counted]`.
    counted: usize,
    line: u64,
    chars: u64,
    /// The marked position in `buf`, and its line and column once counted.
    mark: usize,
    mark_at: Option<LineCol>,
}

impl<R: Read> LineCounter<R> {
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        LineCounter {
            inner,
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
            counted: 0,
            line: 1,
            chars: 0,
            mark: 0,
            mark_at: Some(LineCol { line: 1, column: 1 }),
        }
    }

    /// Remembers the next unconsumed byte's position.
    pub fn mark(&mut self) {
        self.mark = self.start;
        self.mark_at = None;
    }

    /// Where the marked byte is.
    pub fn marked(&mut self) -> LineCol {
        if let Some(at) = self.mark_at {
            return at;
        }
        self.count_to(self.mark);
        let at = self.position();
        self.mark_at = Some(at);
        at
    }

    /// Consumes XML whitespace (space, tab, CR, LF) up to the next other byte or the end.
    pub fn skip_whitespace(&mut self) -> io::Result<()> {
        loop {
            let available = self.fill_buf()?;
            let blank = available.iter().take_while(|&&b| is_whitespace(b)).count();
            let more = blank > 0 && blank == available.len();
            self.consume(blank);
            if !more {
                return Ok(());
            }
        }
    }

    /// Where the next unconsumed byte is.
    pub fn here(&mut self) -> LineCol {
        self.count_to(self.start);
        self.position()
    }

    fn position(&self) -> LineCol {
        LineCol {
            line: self.line,
            column: self.chars + 1,
        }
    }

    /// Reads the next bufferful once everything before has been consumed. Kept out of
    /// `fill_buf`, so that what the tokenizer calls several times per event (about five
    /// million calls for 50,000 pairs) inlines to a comparison.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> io::Result<()> {
        // The buffer is about to be reused: count what it holds first, and settle the mark
        // if it points into it.
        if self.mark_at.is_none() {
            self.marked();
        }
        self.count_to(self.start);
        self.start = 0;
        self.end = 0;
        self.counted = 0;
        self.mark = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn count_to(&mut self, to: usize) {
        if to <= self.counted {
            return;
        }
        let bytes = &self.buf[self.counted..to];
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                self.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
                self.chars = char_starts(&bytes[last + 1..]);
            }
            None => self.chars += char_starts(bytes),
        }
        self.counted = to;
    }
}

/// Characters in a UTF-8 slice: every byte that is not a continuation byte starts one.
fn char_starts(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for LineCounter<R> {
    #[inline]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.refill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    #[inline]
    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_characters() {
        let mut r = LineCounter::with_capacity(4, "ab\nвгд\ne".as_bytes());
        let mut seen = Vec::new();
        loop {
            r.mark();
            let n = r.fill_buf().unwrap().len().min(1);
            if n == 0 {
                break;
            }
            r.consume(n);
            seen.push(r.marked());
        }
        let columns: Vec<(u64, u64)> = seen.iter().map(|c| (c.line, c.column)).collect();
        // Each byte's own position; a Cyrillic letter is two bytes of one character.
        assert_eq!(
            columns,
            vec![
                (1, 1),
                (1, 2),
                (1, 3),
                (2, 1),
                (2, 2),
                (2, 2),
                (2, 3),
                (2, 3),
                (2, 4),
                (2, 4),
                (3, 1)
            ]
        );
        assert_eq!(r.here(), LineCol { line: 3, column: 2 });
    }

    #[test]
    fn skipping_whitespace_crosses_refills_and_keeps_counting() {
        // A buffer of 3 bytes: the run of whitespace spans three refills.
        let mut r = LineCounter::with_capacity(3, "a \t\r\n \n  ж ".as_bytes());
        r.fill_buf().unwrap();
        r.consume(1);
        r.skip_whitespace().unwrap();
        r.mark();
        assert_eq!(
            r.fill_buf().unwrap()[0],
            0xD0,
            "stops at the first other byte"
        );
        assert_eq!(r.marked(), LineCol { line: 3, column: 3 });
        r.consume(2);
        r.skip_whitespace().unwrap();
        assert!(
            r.fill_buf().unwrap().is_empty(),
            "whitespace to the end is consumed"
        );
        assert_eq!(r.here(), LineCol { line: 3, column: 5 });
    }
}
