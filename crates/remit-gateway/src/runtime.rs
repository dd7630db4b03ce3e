//! The async runtime the listeners run on (`gateway.worker_threads`).
//!
//! With more than one thread, tokio's multi-threaded scheduler. With one — because it was
//! configured, or because remit may run on one core only (CPU affinity such as `taskset`,
//! or a cgroup quota of one CPU, as `std::thread::available_parallelism` reads them) — the
//! single-threaded scheduler instead. A multi-threaded scheduler with one worker still pays
//! for work stealing it cannot do: its task queues and wake-ups are the cross-thread kind,
//! and the future `block_on` drives runs on a thread of its own. On one core, the bare
//! HTTP stack of `bench/proxy.sh` used 13–34 % less CPU per request on the single-threaded
//! scheduler, remit about 6 % less (see BENCHMARKS.md, "Proxy hop", 2026-11-27). Either
//! way blocking work goes to tokio's blocking pool, sqlx's connection threads or the audit
//! store's own threads, never to a listener's thread.

use std::num::NonZeroUsize;

/// Which scheduler a runtime with `threads` threads uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// One thread: the single-threaded scheduler.
    CurrentThread,
    /// Several: the multi-threaded scheduler with this many workers.
    MultiThread(NonZeroUsize),
}

impl Scheduler {
    /// The scheduler for `configured` threads, or, when `None`, for one thread per core
    /// this process may run on (`available`, what the OS says; one when it cannot say).
    pub fn choose(configured: Option<NonZeroUsize>, available: Option<NonZeroUsize>) -> Self {
        let threads = configured.or(available).unwrap_or(NonZeroUsize::MIN);
        if threads == NonZeroUsize::MIN {
            Scheduler::CurrentThread
        } else {
            Scheduler::MultiThread(threads)
        }
    }
}

/// A runtime with every driver (IO, time) on, `configured` threads or one per core.
pub fn build(configured: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let available = std::thread::available_parallelism().ok();
    let mut builder = match Scheduler::choose(configured, available) {
        Scheduler::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Scheduler::MultiThread(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.get());
            b
        }
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: usize) -> Option<NonZeroUsize> {
        NonZeroUsize::new(v)
    }

    #[test]
    fn one_thread_configured_or_available_is_the_single_threaded_scheduler() {
        for (configured, available, want) in [
            (None, n(1), Scheduler::CurrentThread),
            (None, None, Scheduler::CurrentThread),
            (n(1), n(8), Scheduler::CurrentThread),
            (
                None,
                n(2),
                Scheduler::MultiThread(NonZeroUsize::new(2).unwrap()),
            ),
            (
                n(4),
                n(1),
                Scheduler::MultiThread(NonZeroUsize::new(4).unwrap()),
            ),
            (
                n(3),
                None,
                Scheduler::MultiThread(NonZeroUsize::new(3).unwrap()),
            ),
        ] {
            assert_eq!(
                Scheduler::choose(configured, available),
                want,
                "{configured:?} configured, {available:?} available"
            );
        }
    }

    #[test]
    fn the_single_threaded_runtime_runs_spawned_and_blocking_work() {
        let rt = build(n(1)).unwrap();
        let main = std::thread::current().id();
        let (task, blocking) = rt.block_on(async move {
            let task = tokio::spawn(async move { std::thread::current().id() });
            let blocking = tokio::task::spawn_blocking(|| std::thread::current().id());
            (task.await.unwrap(), blocking.await.unwrap())
        });
        assert_eq!(
            task, main,
            "tasks run on the thread that drives the runtime"
        );
        assert_ne!(blocking, main, "blocking work runs on the blocking pool");
    }
}
