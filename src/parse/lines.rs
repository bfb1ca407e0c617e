//! Line and column of the bytes the XML tokenizer has consumed.
//!
//! quick-xml reports byte offsets; people need "line 240, column 5". Counting as the
//! tokenizer consumes keeps this O(1) in memory whatever the file size.

use std::io::{self, BufRead, Read};

/// A 1-based line and a 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: u64,
    pub column: u64,
}

pub struct LineCounter<R> {
    inner: R,
    line: u64,
    /// Characters consumed since the last newline.
    chars: u64,
}

impl<R: BufRead> LineCounter<R> {
    pub fn new(inner: R) -> Self {
        LineCounter {
            inner,
            line: 1,
            chars: 0,
        }
    }

    /// Where the next unconsumed byte is.
    pub fn here(&self) -> LineCol {
        LineCol {
            line: self.line,
            column: self.chars + 1,
        }
    }
}

/// The line and column after `bytes`, starting from `line` and `chars`.
fn advance(line: u64, chars: u64, bytes: &[u8]) -> (u64, u64) {
    match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => {
            let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            (line + newlines, char_starts(&bytes[i + 1..]))
        }
        None => (line, chars + char_starts(bytes)),
    }
}

/// Characters in a UTF-8 slice: every byte that is not a continuation byte starts one.
fn char_starts(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.line, self.chars) = advance(self.line, self.chars, &buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // The buffer the caller saw is still there: a BufRead does no I/O between a fill_buf
        // and the consume that follows it.
        if let Ok(buf) = self.inner.fill_buf() {
            let seen = amt.min(buf.len());
            (self.line, self.chars) = advance(self.line, self.chars, &buf[..seen]);
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_characters() {
        let mut r = LineCounter::new("ab\nвгд\ne".as_bytes());
        r.fill_buf().unwrap();
        r.consume(3);
        assert_eq!(r.here(), LineCol { line: 2, column: 1 });
        r.fill_buf().unwrap();
        r.consume(4);
        assert_eq!(r.here(), LineCol { line: 2, column: 3 });
        r.fill_buf().unwrap();
        r.consume(3);
        assert_eq!(r.here(), LineCol { line: 3, column: 1 });
    }
}
