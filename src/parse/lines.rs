//! The buffered reader under the XML tokenizer, which also knows the line and column of
//! any position it was asked to mark.
//!
//! quick-xml reports byte offsets; people need "line 240, column 5". Counting every byte
//! as the tokenizer consumes it would cost more than tokenizing, so the bytes arrive in
//! blocks that already know where their line feeds are ([`Block`]), found with memchr where
//! the block was read, and the parser marks where each event starts (a store of one
//! integer): a line and column is worked out only at record starts and errors, from the
//! nearest line feed before it. [`Ahead`] reads, decodes and indexes the blocks on a
//! thread of its own, so the parser's thread — the slowest stage of `check` — only
//! tokenizes.

use std::io::{self, BufRead, Read};
use std::sync::mpsc;

use quick_xml::utils::is_whitespace;
use xxhash_rust::xxh3::Xxh3;

/// A 1-based line and a 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: u64,
    pub column: u64,
}

/// Bytes of the export, as one read returned them, and where their line feeds are.
pub struct Block {
    buf: Box<[u8]>,
    len: usize,
    /// Offsets of the line feeds in `buf[..len]`.
    newlines: Vec<u32>,
    /// Characters after the last line feed (all of the block's if it has none).
    tail_chars: u64,
}

impl Block {
    /// Holds nothing and allocated nothing: the state before the first read.
    fn empty() -> Block {
        Block {
            buf: Box::default(),
            len: 0,
            newlines: Vec::new(),
            tail_chars: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// One read from `input` into this block, reusing its memory; `len` is 0 at the end.
    fn fill(&mut self, input: &mut impl Read, capacity: usize) -> io::Result<()> {
        // Offsets are kept as u32.
        let capacity = capacity.clamp(1, u32::MAX as usize);
        if self.buf.len() != capacity {
            self.buf = vec![0; capacity].into_boxed_slice();
        }
        self.len = 0;
        self.newlines.clear();
        self.tail_chars = 0;
        self.len = loop {
            match input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        let bytes = &self.buf[..self.len];
        self.newlines
            .extend(memchr::memchr_iter(b'\n', bytes).map(|at| at as u32));
        let tail = self.newlines.last().map_or(0, |&at| at as usize + 1);
        self.tail_chars = char_starts(&bytes[tail..]);
        Ok(())
    }
}

/// Where a [`LineCounter`] gets its blocks from.
pub trait Blocks {
    /// The next block, given back the one the reader is done with; an empty block at the end.
    fn next(&mut self, spent: Block) -> io::Result<Block>;
}

/// Blocks read on the caller's thread.
pub struct Inline<R> {
    input: R,
    capacity: usize,
}

impl<R: Read> Inline<R> {
    pub fn new(input: R, capacity: usize) -> Self {
        Inline { input, capacity }
    }
}

impl<R: Read> Blocks for Inline<R> {
    fn next(&mut self, mut spent: Block) -> io::Result<Block> {
        spent.fill(&mut self.input, self.capacity)?;
        Ok(spent)
    }
}

/// Blocks read ahead on a thread of its own, at most [`AHEAD`] of them waiting.
///
/// The reading thread ends at the end of the input, at its first error (handed on as the
/// next block), or when this side is dropped and its next block has nowhere to go. It is not
/// waited for: a read stalled on a network source must not hold up the parser's end.
pub struct Ahead {
    full: mpsc::Receiver<io::Result<Block>>,
    spent: mpsc::Sender<Block>,
    ended: bool,
}

/// Blocks waiting for the parser: enough to carry it over one slow read.
const AHEAD: usize = 2;

impl Ahead {
    /// Starts the reading thread; `started` runs on it first (the stage's priority).
    pub fn spawn<R: Read + Send + 'static>(
        mut input: R,
        capacity: usize,
        name: &str,
        started: fn(),
    ) -> io::Result<Ahead> {
        let (full_tx, full) = mpsc::sync_channel(AHEAD);
        let (spent, spent_rx) = mpsc::channel::<Block>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                started();
                loop {
                    let mut block = spent_rx.try_recv().unwrap_or_else(|_| Block::empty());
                    let read = block.fill(&mut input, capacity);
                    let last = !matches!(read, Ok(()) if block.len > 0);
                    if full_tx.send(read.map(|()| block)).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(Ahead {
            full,
            spent,
            ended: false,
        })
    }
}

impl Blocks for Ahead {
    fn next(&mut self, spent: Block) -> io::Result<Block> {
        if self.ended {
            return Ok(Block::empty());
        }
        // The reading thread may have ended already; the block is then simply dropped.
        let _ = self.spent.send(spent);
        match self.full.recv() {
            Ok(Ok(block)) => {
                self.ended = block.len == 0;
                Ok(block)
            }
            Ok(Err(e)) => {
                self.ended = true;
                Err(e)
            }
            Err(mpsc::RecvError) => {
                self.ended = true;
                Err(io::Error::other(
                    "the thread reading the input stopped before its end",
                ))
            }
        }
    }
}

pub struct LineCounter<B> {
    blocks: B,
    block: Block,
    /// Consumed up to here in `block`.
    start: usize,
    /// The line of the block's first byte, and the characters before it on that line.
    line: u64,
    chars: u64,
    /// The last position worked out, so that positions asked in order along one long line
    /// (an export written without line breaks) count each character once.
    known: Option<(usize, LineCol)>,
    /// The marked position in `block`, and its line and column once worked out.
    mark: usize,
    mark_at: Option<LineCol>,
    /// The bytes before `block`, and the hash of everything consumed, fed up to `hashed` in
    /// `block`: hashing is brought up to date only where a prefix is asked for and when a
    /// block is done, not at every consume.
    base: u64,
    hasher: Xxh3,
    hashed: usize,
}

impl<B: Blocks> LineCounter<B> {
    pub fn new(blocks: B) -> Self {
        LineCounter {
            blocks,
            block: Block::empty(),
            start: 0,
            line: 1,
            chars: 0,
            known: None,
            mark: 0,
            mark_at: Some(LineCol { line: 1, column: 1 }),
            base: 0,
            hasher: Xxh3::new(),
            hashed: 0,
        }
    }

    /// The bytes consumed so far and the XXH3-128 of them.
    pub fn prefix(&mut self) -> (u64, u128) {
        self.hasher.update(&self.block.buf[self.hashed..self.start]);
        self.hashed = self.start;
        (self.base + self.start as u64, self.hasher.digest128())
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
        let at = self.position(self.mark);
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
        self.position(self.start)
    }

    /// The line and column of `block[offset]`, from the nearest line feed before it.
    fn position(&mut self, offset: usize) -> LineCol {
        let block = &self.block;
        let before = block.newlines.partition_point(|&at| (at as usize) < offset);
        let line = self.line + before as u64;
        let line_start = match before {
            0 => 0,
            n => block.newlines[n - 1] as usize + 1,
        };
        let column = match self.known {
            // Further along the same line as the last position worked out.
            Some((from, at)) if at.line == line && from <= offset && from >= line_start => {
                at.column + char_starts(&block.bytes()[from..offset])
            }
            _ => {
                let carried = if before == 0 { self.chars } else { 0 };
                carried + char_starts(&block.bytes()[line_start..offset]) + 1
            }
        };
        let at = LineCol { line, column };
        self.known = Some((offset, at));
        at
    }

    /// Takes the next block once everything before has been consumed. Kept out of
    /// `fill_buf`, so that what the tokenizer calls several times per event inlines to a
    /// comparison.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> io::Result<()> {
        // The block is about to go: settle the mark if it points into it.
        if self.mark_at.is_none() {
            self.marked();
        }
        let block = &self.block;
        self.hasher.update(&block.buf[self.hashed..block.len]);
        self.hashed = 0;
        self.base += block.len as u64;
        self.line += block.newlines.len() as u64;
        self.chars = match block.newlines.is_empty() {
            true => self.chars + block.tail_chars,
            false => block.tail_chars,
        };
        let spent = std::mem::replace(&mut self.block, Block::empty());
        self.start = 0;
        self.mark = 0;
        self.known = None;
        self.block = self.blocks.next(spent)?;
        Ok(())
    }
}

/// Characters in a UTF-8 slice: every byte that is not a continuation byte starts one.
fn char_starts(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64
}

impl<B: Blocks> Read for LineCounter<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<B: Blocks> BufRead for LineCounter<B> {
    #[inline]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.block.len {
            self.refill()?;
        }
        Ok(&self.block.buf[self.start..self.block.len])
    }

    #[inline]
    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.block.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(text: &str, capacity: usize) -> LineCounter<Inline<&[u8]>> {
        LineCounter::new(Inline::new(text.as_bytes(), capacity))
    }

    /// Every byte's position, counted the slow way over the whole text.
    fn naive(text: &str) -> Vec<LineCol> {
        let bytes = text.as_bytes();
        (0..bytes.len())
            .map(|at| {
                let line_start = bytes[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |nl| nl + 1);
                LineCol {
                    line: 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64,
                    column: 1 + char_starts(&bytes[line_start..at]),
                }
            })
            .collect()
    }

    /// Marks every byte in turn and asks where it is, as the parser does at record starts.
    fn walk<B: Blocks>(r: &mut LineCounter<B>) -> Vec<LineCol> {
        let mut seen = Vec::new();
        loop {
            r.mark();
            let n = r.fill_buf().unwrap().len().min(1);
            if n == 0 {
                return seen;
            }
            r.consume(n);
            seen.push(r.marked());
        }
    }

    #[test]
    fn counts_lines_and_characters() {
        let mut r = inline("ab\nвгд\ne", 4);
        let columns: Vec<(u64, u64)> = walk(&mut r).iter().map(|c| (c.line, c.column)).collect();
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

    /// Lines longer than a block, blocks without a line feed, a line feed as a block's first
    /// or last byte, and an export written as one long line.
    #[test]
    fn positions_agree_with_counting_from_the_start_at_any_block_size() {
        let long_line = "<a>жук</a>".repeat(40);
        let texts = [
            "ab\nвгд\ne".to_owned(),
            format!("\n\n{long_line}\n\nё\r\n  x\n"),
            long_line.clone(),
            format!("ж{long_line}\n{long_line}ж"),
        ];
        for text in &texts {
            for capacity in [1, 2, 3, 5, 16, 64, 4096] {
                let seen = walk(&mut inline(text, capacity));
                assert_eq!(
                    seen,
                    naive(text),
                    "block of {capacity} bytes, text {text:?}"
                );
            }
        }
    }

    /// The parser asks for its mark after it has read on (an error found at the end of a
    /// record, the record's start asked for later): the answer is the mark's own position.
    #[test]
    fn a_mark_asked_for_after_reading_on_is_where_it_was() {
        let text = "один\nдва три\nчетыре";
        for capacity in [1, 3, 7, 64] {
            let mut r = inline(text, capacity);
            r.fill_buf().unwrap();
            r.consume(1);
            r.here();
            r.mark();
            let mut left = 14;
            while left > 0 {
                let n = r.fill_buf().unwrap().len().min(left);
                r.consume(n);
                left -= n;
            }
            assert_eq!(r.here(), naive(text)[15], "block of {capacity}");
            assert_eq!(r.marked(), naive(text)[1], "block of {capacity}");
        }
    }

    #[test]
    fn skipping_whitespace_crosses_refills_and_keeps_counting() {
        // A buffer of 3 bytes: the run of whitespace spans three refills.
        let mut r = inline("a \t\r\n \n  ж ", 3);
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

    /// Yields its bytes a few at a time, then fails the way a broken download does.
    struct FailsAfter {
        bytes: &'static [u8],
    }

    impl Read for FailsAfter {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.bytes.is_empty() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut off"));
            }
            let n = self.bytes.len().min(out.len()).min(3);
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn blocks_read_ahead_arrive_in_order_with_their_positions_and_end_with_the_input() {
        let text = format!("первая\n{}\nпоследняя", "<x>ё</x>".repeat(30));
        let input = io::Cursor::new(text.clone().into_bytes());
        let mut r = LineCounter::new(Ahead::spawn(input, 5, "test-read", || {}).unwrap());
        assert_eq!(walk(&mut r), naive(&text));
        assert!(r.fill_buf().unwrap().is_empty(), "the end stays the end");
    }

    #[test]
    fn a_read_that_fails_ahead_fails_the_reader_after_the_bytes_before_it() {
        let ahead = Ahead::spawn(
            FailsAfter {
                bytes: b"<a>\n</a>",
            },
            4,
            "test-read",
            || {},
        );
        let mut r = LineCounter::new(ahead.unwrap());
        let mut read = Vec::new();
        let error = r.read_to_end(&mut read).unwrap_err();
        assert_eq!(read, b"<a>\n</a>");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(error.to_string(), "cut off");
        assert_eq!(r.here(), LineCol { line: 2, column: 5 });
    }

    /// Holds its end of a channel: the channel closes when the reading thread lets go.
    struct Endless {
        _alive: std::sync::mpsc::Sender<()>,
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            out.fill(b' ');
            Ok(out.len())
        }
    }

    #[test]
    fn the_reading_thread_ends_when_the_parser_stops_early() {
        let (alive, gone) = std::sync::mpsc::channel();
        let mut r = LineCounter::new(
            Ahead::spawn(Endless { _alive: alive }, 64, "test-read", || {}).unwrap(),
        );
        r.fill_buf().unwrap();
        drop(r);
        assert_eq!(
            gone.recv_timeout(std::time::Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the thread dropped its input"
        );
    }
}
