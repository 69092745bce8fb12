//! The agent's heap: how the C allocator is set up, and when freed memory goes back to the kernel.
//!
//! The agent does a few large, short jobs (loading the dataplane parses the kernel's BTF, twice, tens of
//! MiB in ~130,000 allocations; a policy replacement parses and compiles every rule) between long idle
//! stretches. With glibc's defaults the memory of those jobs stays resident after it is freed:
//! - every thread that allocates gets an arena of its own, up to 8 per core (512 on a 64-core node), and the
//!   free memory of one arena serves no other thread;
//! - the first large block freed raises the mmap threshold to its size (up to 32 MiB) and the trim threshold
//!   to twice that, so the next large blocks come from the arenas instead of their own mappings, and the free
//!   space at the top of an arena is kept unless it exceeds the raised trim threshold;
//! - free chunks inside an arena, below live ones, are only returned by `malloc_trim`.
//!
//! Measured with `pnpm bench:footprint`: the idle agent held 20 MiB of such free memory from the load, and
//! 196 MiB after a 262,144-rule policy was replaced by a 10-rule one (docs/agent.md, "Resources").
//! [`configure`] fixes the thresholds and bounds the arenas before the first thread starts; [`release_free`]
//! returns the free pages of every arena: right after the load, and through [`Release`] once the agent has
//! been quiet for a second after a policy replacement, a burst of control connections ([`Burst`]) or a flood of
//! verdict events ([`Backlog`]).
//!
//! musl (the static agents): its allocator (mallocng) has neither these settings nor a trim, so both functions
//! do nothing there. Measured the same way, the static agent idles at 25.4 MiB and keeps what a large policy
//! left (87 MiB back at 10 rules after the 262,144-rule one): docs/agent.md, "Resources".

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Malloc arenas the process may have. The agent's threads (the async workers, the blocking pool, the log
/// writer) share them; glibc's per-thread cache still serves most small allocations without taking an
/// arena's lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const ARENAS: libc::c_int = 2;

/// Blocks of this size and larger get a mapping of their own, returned to the kernel when freed. Fixed, so
/// that one large block freed does not move every later one into the arenas. Below it stay the hot mid-size
/// buffers (an event batch of 1,024 records is ~170 KiB) that would otherwise be mapped and unmapped per batch.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Free space at the top of an arena beyond this is returned at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const TRIM_THRESHOLD: libc::c_int = 1024 * 1024;

/// Sets up the allocator. Call it before any thread is started: arenas are created as threads first allocate.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; with glibc it is safe to call at any time, and it is
    // called here before the process has other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns the whole free pages of every arena to the kernel (`malloc_trim(0)`). It walks the arenas' free
/// lists, a few milliseconds at most: call it after a large job, not on a hot path.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' locks itself and only releases memory no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives freed memory back once the agent has been quiet for [`Release::QUIET`] after a large job, not in the
/// middle of a series of them: there the trim competed for the CPU with the next job, which then faulted the
/// same pages in again (back-to-back 100,000-rule replacements took 20-30% longer with a trim after each).
/// Jobs in a row pay for one trim, after the last.
#[derive(Debug)]
pub struct Release {
    /// Bumped by every job; a scheduled release runs only if no job came after it.
    last_job: AtomicU64,
    quiet: Duration,
    action: fn(),
}

impl Release {
    pub const QUIET: Duration = Duration::from_secs(1);

    /// [`release_free`] after [`Self::QUIET`].
    pub fn new() -> Arc<Release> {
        Release::with(Self::QUIET, release_free)
    }

    fn with(quiet: Duration, action: fn()) -> Arc<Release> {
        Arc::new(Release {
            last_job: AtomicU64::new(0),
            quiet,
            action,
        })
    }

    /// A large job just freed its memory: release it once no other job followed for the quiet time (on the
    /// blocking pool). Needs the tokio runtime.
    pub fn after_large_job(self: &Arc<Self>) {
        let job = self.last_job.fetch_add(1, Ordering::AcqRel) + 1;
        let release = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(release.quiet).await;
            if release.last_job.load(Ordering::Acquire) == job {
                let _ = tokio::task::spawn_blocking(release.action).await;
            }
        });
    }
}

/// Open control connections, to give back the memory of a burst of clients once it is over. Each connection
/// leaves its task, buffers and replies behind as free memory in the arenas; after 1,000 clients that was
/// 8 MiB of RSS that stayed.
#[derive(Debug, Default)]
pub struct Burst {
    open: AtomicUsize,
    /// The most connections open at once since the last release.
    peak: AtomicUsize,
}

impl Burst {
    /// A peak of at least this many connections is a burst worth a `malloc_trim`.
    pub const CONNECTIONS: usize = 128;

    pub fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(open, Ordering::AcqRel);
    }

    /// A connection closed; true (once per burst) when a burst is over: the open connections fell to a quarter
    /// of a peak of at least [`Self::CONNECTIONS`]. The caller then calls [`Release::after_large_job`].
    pub fn closed(&self) -> bool {
        let open = self.open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        let peak = self.peak.load(Ordering::Acquire);
        peak >= Self::CONNECTIONS
            && open <= peak / 4
            && self
                .peak
                .compare_exchange(peak, open, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// The event pump's backlog: a flood of verdicts fills the dataplane's event queue (up to 65,536 decoded
/// events, their strings, the log lines made of them), and all of it is free once the pump has caught up: 9 MiB
/// of RSS stayed after a 5 s flood of denied sends.
#[derive(Debug, Default)]
pub struct Backlog {
    /// A full batch was taken since the backlog last drained: the queue held more than a batch.
    seen: bool,
}

impl Backlog {
    /// After each batch the pump took (`full`: as many events as it asked for); true when a backlog has just
    /// drained, and the caller calls [`Release::after_large_job`].
    pub fn after_batch(&mut self, full: bool) -> bool {
        if full {
            self.seen = true;
            return false;
        }
        std::mem::take(&mut self.seen)
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    #[test]
    fn a_burst_is_over_once_a_quarter_of_its_peak_is_left() {
        let b = Burst::default();
        for _ in 0..Burst::CONNECTIONS {
            b.opened();
        }
        let closes: Vec<bool> = (0..Burst::CONNECTIONS).map(|_| b.closed()).collect();
        let over = Burst::CONNECTIONS - Burst::CONNECTIONS / 4 - 1;
        assert_eq!(closes.iter().filter(|&&c| c).count(), 1, "once per burst");
        assert!(closes[over], "at a quarter of the peak");
        // A handful of connections is not a burst.
        for _ in 0..10 {
            b.opened();
        }
        assert!((0..10).all(|_| !b.closed()));
    }

    #[test]
    fn a_backlog_is_over_when_a_partial_batch_follows_full_ones() {
        let mut b = Backlog::default();
        // Steady small batches: nothing to give back.
        assert!(!b.after_batch(false));
        assert!(!b.after_batch(true));
        assert!(!b.after_batch(true));
        assert!(b.after_batch(false), "the backlog drained");
        assert!(!b.after_batch(false), "once");
    }

    static RELEASED: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn jobs_in_a_row_are_released_once_after_the_last() {
        fn count() {
            RELEASED.fetch_add(1, Ordering::SeqCst);
        }
        async fn released_reaches(n: usize) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while RELEASED.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let release = Release::with(Duration::from_millis(50), count);
            // Five jobs before any timer can fire (nothing is awaited in between): one release, after the last.
            for _ in 0..5 {
                release.after_large_job();
            }
            released_reaches(1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(RELEASED.load(Ordering::SeqCst), 1, "once for the five");
            release.after_large_job();
            released_reaches(2).await;
            assert_eq!(RELEASED.load(Ordering::SeqCst), 2);
        });
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("resident pages");
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        pages * page
    }

    #[test]
    fn freed_small_allocations_below_live_ones_go_back_to_the_kernel() {
        configure();
        // 64 MiB in 256-byte blocks, with one block in every MiB kept alive: the free memory sits below live
        // chunks, where only malloc_trim reaches it (the load's BTF parse leaves the same pattern).
        const BLOCK: usize = 256;
        const BLOCKS: usize = 64 * 1024 * 1024 / BLOCK;
        let (kept, freed) = std::thread::spawn(|| {
            let mut all: Vec<Box<[u8; BLOCK]>> =
                (0..BLOCKS).map(|_| Box::new([1u8; BLOCK])).collect();
            let kept: Vec<Box<[u8; BLOCK]>> = all
                .iter_mut()
                .step_by(4096)
                .map(|b| std::mem::replace(b, Box::new([2u8; BLOCK])))
                .collect();
            let before = rss_bytes();
            drop(all);
            (kept, before)
        })
        .join()
        .expect("allocating thread");
        let held = rss_bytes();
        release_free();
        let after = rss_bytes();
        drop(kept);
        // Most of the 64 MiB goes back (other tests may allocate meanwhile: a generous margin).
        assert!(
            held.saturating_sub(after) > 32 * 1024 * 1024,
            "RSS {freed} B with the blocks, {held} B after freeing them, {after} B after release_free"
        );
    }
}
