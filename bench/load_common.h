// The clock and CPU helpers the benchmarks' C load generators share (bench/dataplane/connect_rate.c,
// bench/dataplane/throughput.c, bench/dns/dns_load.c). Include after <sched.h>, <stdint.h> and <time.h> with
// _GNU_SOURCE defined.
#ifndef BENCH_LOAD_COMMON_H
#define BENCH_LOAD_COMMON_H

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Best effort: a cpuset cgroup may forbid the CPU; the run is still valid, only noisier.
static void pin_to_cpu(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof(set), &set);
}

#endif
