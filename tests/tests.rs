//! All integration tests in one binary (one link, one run).

mod common;

mod api;
mod api_pipelines;
mod backends;
mod cli;
mod console;
mod console_browser;
mod crash;
mod daemon;
mod disk_full;
mod encodings;
mod ftp_source;
mod halt;
mod held;
mod http_source;
mod in_chunk;
mod layouts;
mod mail;
mod malformed;
mod matching;
mod memory;
mod no_panic;
mod oracle;
mod phones;
mod pipelines;
mod reimport;
mod resume;
mod snapshot;
