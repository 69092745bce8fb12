//! The standard `process_*` metrics every Prometheus client library exports, read from `/proc/self` at each
//! scrape, with the names and units of the Go client's process collector (so the usual dashboards work).

/// What one scrape reads; a field the kernel did not give is `None` and its family is left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    /// Since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE` (the agent raises it to the hard limit at start).
    pub max_fds: Option<u64>,
}

/// Fields of `/proc/self/stat`, counted from 1 as proc(5) numbers them.
const UTIME: usize = 14;
const STIME: usize = 15;
const STARTTIME: usize = 22;
const VSIZE: usize = 23;
const RSS: usize = 24;

/// The constants the conversion needs: clock ticks per second, the page size, and the boot time (seconds
/// since the epoch).
#[derive(Clone, Copy, Debug)]
struct Clock {
    ticks_per_second: u64,
    page_size: u64,
    boot_time: Option<u64>,
}

/// Reads every metric of this process; never fails (what cannot be read is `None`).
pub fn read() -> ProcessStats {
    // SAFETY: sysconf only reads system constants.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let clock = Clock {
        ticks_per_second: u64::try_from(ticks).unwrap_or(0),
        page_size: u64::try_from(page).unwrap_or(0),
        boot_time: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s)),
    };
    let mut stats = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .map(|s| from_stat(&s, clock))
        .unwrap_or_default();
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    stats.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| max_open_files(&s));
    stats
}

/// The fields of `/proc/self/stat` after the command name, which is in parentheses and may itself hold spaces
/// and parentheses: the last `)` ends it. The first returned field is field 3 (`state`).
fn fields_after_comm(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_ascii_whitespace().collect())
        .unwrap_or_default()
}

fn from_stat(stat: &str, clock: Clock) -> ProcessStats {
    let fields = fields_after_comm(stat);
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let seconds = |ticks: u64| -> Option<f64> {
        (clock.ticks_per_second > 0).then(|| ticks as f64 / clock.ticks_per_second as f64)
    };
    ProcessStats {
        cpu_seconds: field(UTIME)
            .zip(field(STIME))
            .and_then(|(u, s)| seconds(u.saturating_add(s))),
        resident_memory_bytes: field(RSS)
            .filter(|_| clock.page_size > 0)
            .map(|pages| pages.saturating_mul(clock.page_size)),
        virtual_memory_bytes: field(VSIZE),
        start_time_seconds: field(STARTTIME)
            .and_then(seconds)
            .zip(clock.boot_time)
            .map(|(since_boot, boot)| boot as f64 + since_boot),
        open_fds: None,
        max_fds: None,
    }
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    // A real line of /proc/<pid>/stat, with a command name that holds a space and a parenthesis.
    const STAT: &str = "4711 (agent (x) w) S 1 4711 4711 0 -1 4194560 2279 0 0 0 150 37 0 0 20 0 6 0 \
                        12345 1259409408 3072 18446744073709551615 1 1 0 0 0 0 0 4096 17990 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let clock = Clock {
            ticks_per_second: 100,
            page_size: 4096,
            boot_time: Some(1_700_000_000),
        };
        assert_eq!(
            from_stat(STAT, clock),
            ProcessStats {
                cpu_seconds: Some(1.87),
                resident_memory_bytes: Some(3072 * 4096),
                virtual_memory_bytes: Some(1_259_409_408),
                start_time_seconds: Some(1_700_000_123.45),
                open_fds: None,
                max_fds: None,
            }
        );
        assert_eq!(from_stat("garbage", clock), ProcessStats::default());
    }

    #[test]
    fn boot_time_and_fd_limit() {
        assert_eq!(
            boot_time("cpu  1 2 3\nintr 5\nctxt 9\nbtime 1765000000\nprocesses 77\n"),
            Some(1_765_000_000)
        );
        assert_eq!(boot_time("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95880                95880                processes \n\
                      Max open files            524288               1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(524_288));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = read();
        let rss = s.resident_memory_bytes.expect("rss");
        let vsize = s.virtual_memory_bytes.expect("vsize");
        assert!(rss > 0 && vsize >= rss, "rss {rss} vsize {vsize}");
        assert!(s.cpu_seconds.expect("cpu") >= 0.0);
        let fds = s.open_fds.expect("fds");
        assert!(fds >= 1, "at least the directory being read: {fds}");
        assert!(s.max_fds.expect("limit") >= fds);
        // This test process started less than a day ago, and not in the future (btime is whole seconds, so the
        // start time may be off by up to one).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let up = now - s.start_time_seconds.expect("start time");
        assert!((-1.0..86_400.0).contains(&up), "started {up} s ago");
    }
}
