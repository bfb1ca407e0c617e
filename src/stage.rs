//! What the stages share: the batch they hand each other, how much waits on each edge, and
//! the priority their threads run at. It sits below every stage, so no stage imports the
//! `pipeline` that wires them.

use crate::error::{Problem, Warnings};

/// Batches waiting on each edge between stages.
pub const QUEUE: usize = 2;
/// Records per batch handed from stage to stage (fewer when the chunk is smaller).
pub const BATCH: usize = 1000;
/// How long the apply stage waits for the next records before it commits what it holds.
/// The parser and the validators run at a lower priority and fall a batch behind now and
/// then; committing at each such moment would more than double the commits of a fresh
/// import. A stalled download still commits what arrived after this pause.
pub const INPUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// Records per chunk unless a pipeline says otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 2500;

/// What travels between stages: a chunk of records in document order, then either the end
/// of the document (with warnings found after the last record) or the problem that made the
/// rest of it unreadable.
#[derive(Debug)]
pub enum Batch<T> {
    Records(Vec<T>),
    End(Warnings),
    Fatal(Problem),
}

/// Niceness of the read, parse and validate threads.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux: its nice value, which is per
/// thread). The reader, the parser and the validators run ahead of the apply stage behind
/// bounded channels, so they lose nothing by waiting for a core, while the apply stage's
/// hand-overs with SQLite's worker thread would otherwise wait for a time slice.
///
/// A thread already at a lower priority (a process started with `nice`) keeps it.
pub fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        if getpriority_process(me).is_ok_and(|nice| nice < BACKGROUND_NICE)
            && let Err(e) = setpriority_process(me, BACKGROUND_NICE)
        {
            tracing::debug!("the stage's thread keeps its priority: {e}");
        }
    }
}
