//! Which process runs a run: its host, process id and the process's start time, kept with the
//! run so that a later start on the same host can tell a crashed run from a live one at once
//! (a process id alone may have been reused by then).

use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The process's start in clock ticks since boot (`/proc/PID/stat`, field 22); 0 where
    /// there is no `/proc`.
    pub started: u64,
}

static THIS: LazyLock<Holder> = LazyLock::new(|| {
    let pid = std::process::id();
    Holder {
        host: host(),
        pid,
        started: start_of(pid).unwrap_or(0),
    }
});

impl Holder {
    /// This process.
    pub fn this() -> &'static Holder {
        &THIS
    }

    /// As kept in the `runs.holder` column: `host/pid/start`.
    pub fn to_column(&self) -> String {
        format!("{}/{}/{}", self.host, self.pid, self.started)
    }

    pub fn from_column(text: &str) -> Option<Holder> {
        let mut parts = text.rsplitn(3, '/');
        let started = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        Some(Holder { host, pid, started })
    }

    /// The holder was a process on this host that no longer runs. A holder on another host
    /// is never judged from here: its lease says whether it is alive.
    pub fn is_gone(&self) -> bool {
        let this = Holder::this();
        if self.host != this.host || this.started == 0 {
            return false;
        }
        start_of(self.pid) != Some(self.started)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on host {}", self.pid, self.host)
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// When process `pid` started, or `None` when there is no such process.
fn start_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_one_is_gone() {
        let this = Holder::this();
        assert!(this.started > 0);
        assert!(!this.is_gone());
        assert_eq!(Holder::from_column(&this.to_column()).as_ref(), Some(this));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_of(pid);
        child.wait().unwrap();
        let finished = Holder {
            host: this.host.clone(),
            pid,
            started: started.unwrap_or(1),
        };
        assert!(finished.is_gone());
        let elsewhere = Holder {
            host: "another-host".into(),
            ..finished
        };
        assert!(
            !elsewhere.is_gone(),
            "another host's process is judged by its lease"
        );
    }
}
