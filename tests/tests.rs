//! All integration tests in one binary (one link, one run).

mod common;

mod cli;
mod encodings;
mod halt;
mod malformed;
mod matching;
mod oracle;
mod reimport;
