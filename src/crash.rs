//! Crash points for the crash-consistency tests (tests/crash.rs). `BACKPROP_CRASH_AT=point:n`
//! makes the process SIGKILL itself the n-th time it passes the named point (`point` alone
//! means the first time), so a test can die at exactly the worst moments: inside a
//! transaction before its commit, between an epoch and its checkpoint, after a commit but
//! before the answer. Without the variable a point costs one initialised-once load; nothing
//! here is a setting, and production never sets it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every point the code passes, in the order a job meets them (docs/reliability.md and
/// tests/crash.rs name them).
pub const POINTS: [&str; 13] = [
    "dataset_insert",   // inside the dataset INSERT's transaction, before COMMIT
    "dataset_ack",      // dataset committed, the 201 not sent
    "job_ack",          // job committed as queued, the 202 not sent
    "job_claimed",      // a worker claimed the job (running, attempt n), nothing trained
    "history_truncate", // resuming: inside the transaction dropping epochs past the checkpoint
    "epoch_recorded",   // an epoch committed, its checkpoint not yet written
    "checkpoint_write", // inside the checkpoint's transaction, before COMMIT
    "checkpoint_saved", // the checkpoint committed, the next epoch not started
    "model_save",       // inside finish_job's transaction (model inserted), before COMMIT
    "job_finished",     // the job committed as succeeded with its model
    "model_insert",     // inside an imported model's transaction, before COMMIT
    "model_ack",        // imported model committed, the 201 not sent
    "delete_ack",       // a delete committed, the 204 not sent
];

struct Armed {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("BACKPROP_CRASH_AT").ok()?;
            let (point, nth) = match v.rsplit_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().ok()?),
                None => (v, 1),
            };
            Some(Armed {
                point,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills the process with SIGKILL when `BACKPROP_CRASH_AT` names this point and this is its
/// n-th pass; otherwise does nothing.
pub fn point(name: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.point != name || a.seen.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    // Straight to stderr (the log): the tracing pipeline may never flush.
    eprintln!("BACKPROP_CRASH_AT: SIGKILL at {name} (pass {})", a.nth);
    // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so nothing after it runs.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // Delivery is asynchronous in principle: never return into the code being crashed.
    loop {
        std::thread::park();
    }
}

/// A job that kills its node, for tests/containment.rs: with `BACKPROP_CRASH_JOB_NAME=name`
/// the process SIGKILLs itself every time a worker starts a job of that name (as a job whose
/// memory the machine cannot hold would), so the queue's crash containment can be tested
/// without exhausting the test machine's memory. Production never sets it.
pub fn poisoned_job(job_name: Option<&str>) {
    static POISON: OnceLock<Option<String>> = OnceLock::new();
    let poison = POISON.get_or_init(|| std::env::var("BACKPROP_CRASH_JOB_NAME").ok());
    if let (Some(p), Some(n)) = (poison, job_name)
        && p == n
    {
        eprintln!("BACKPROP_CRASH_JOB_NAME: SIGKILL starting job {n:?}");
        // SAFETY: kill(2) on our own pid, as in `point`.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        loop {
            std::thread::park();
        }
    }
}
