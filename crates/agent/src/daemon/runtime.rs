//! The agent's async runtime, sized for the agent's work rather than for the machine it runs on.
//!
//! - Workers: one per available CPU (`available_parallelism`, which follows the cgroup's CPU quota and the
//!   affinity mask), at least 2 and at most [`MAX_WORKERS`]. The work is a control socket, a heartbeat and the
//!   event pump; a 64-core node gets the same 4 workers as a 4-core one, not 64 threads with their stacks and
//!   allocator caches.
//! - Blocking pool: every dataplane call (a map read or write, a policy replacement) runs there. tokio's
//!   default of 512 threads turned a burst of 1,000 clients asking `GetStatus` into 512 threads (measured: the
//!   agent went from 7 to 517 threads, and from 22 to 37 MiB RSS, 14 MiB of which stayed after the threads
//!   left). The calls are short system calls that need a CPU, not a thread each: [`BLOCKING_THREADS`] threads
//!   serve the same burst in the same time (1.3-1.4 s for 5,000 requests on a 2-CPU machine) with 13 threads
//!   in all; a waiting call is one small queued task.

use std::time::Duration;

/// Most async worker threads.
pub const MAX_WORKERS: usize = 4;

/// Most threads of the blocking pool (dataplane calls).
pub const BLOCKING_THREADS: usize = 8;

/// How long an idle blocking thread is kept for the next call (tokio's default).
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Worker threads for a machine with `cpus` available CPUs.
pub fn workers(cpus: Option<usize>) -> usize {
    cpus.map_or(2, |n| n.clamp(2, MAX_WORKERS))
}

/// The multi-threaded runtime the agent runs on.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().ok().map(|n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers(cpus))
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_name("agent-worker")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_do_not_scale_with_the_machine() {
        assert_eq!(workers(None), 2);
        assert_eq!(workers(Some(1)), 2);
        assert_eq!(workers(Some(2)), 2);
        assert_eq!(workers(Some(64)), MAX_WORKERS);
    }

    #[test]
    fn the_blocking_pool_is_bounded() {
        let rt = build().expect("runtime");
        let peak = rt.block_on(async {
            let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let calls: Vec<_> = (0..64)
                .map(|_| {
                    let (running, peak) = (running.clone(), peak.clone());
                    tokio::task::spawn_blocking(move || {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = running.fetch_add(1, SeqCst) + 1;
                        peak.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, SeqCst);
                    })
                })
                .collect();
            for c in calls {
                c.await.expect("blocking call");
            }
            peak.load(std::sync::atomic::Ordering::SeqCst)
        });
        assert!(peak <= BLOCKING_THREADS, "{peak} blocking calls at once");
    }
}
