// throughput: the load generator of `pnpm bench:layers` (bench/dataplane/layers.mjs).
//
// Runs one workload for a fixed wall-clock time and prints one JSON line. The caller joins the cgroup first, then
// enters the network namespace, then execs this program, so the programs that run are exactly the ones attached
// above that cgroup. Sender and receiver are both in this process (the usual case of a workload talking to a
// local service); the sender is pinned to <cpu>, the receiver to the other CPU when there is one.
//
// Modes:
//   tcp-stream   one TCP connection to a listener on <ip>:<port>; the sender writes 64 KiB chunks, the receiver
//                reads and counts. Output: bytes/s received.
//   udp-flood    one connected UDP socket sends 64-byte datagrams (send(), no address: no sendmsg hook runs, every
//                packet meets only the egress layer); a receiver drains and counts. Output: datagrams/s sent.
//   udp-sendto   the same with an unconnected socket and sendto(): every datagram is judged by sendmsg4 (which
//                marks the socket) and then meets the egress layer.
//   sockets      socket(AF_INET, SOCK_STREAM) + close() in a loop: the cost of the sock_create hook.
//
// Usage: throughput <mode> <ipv4> <port> <duration_ms> [cpu]
// Output: {"mode":"...","ops":N,"bytes":N,"received":N,"errors":N,"first_errno":E,"elapsed_ns":N,"per_sec":R,
//          "bytes_per_sec":R,"cpu_ns_per_op":R}
// cpu_ns_per_op is the sending thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) per call: the cost of one call
// with everything the kernel runs in its context (the egress program runs there for these sends), and far less
// sensitive than the wall-clock rate to other load on a shared machine.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../load_common.h"

#define CHUNK (64 * 1024)
#define DATAGRAM 64

static atomic_int stop;
static atomic_ullong received;

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


static int other_cpu(int cpu) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 1 ? (cpu + 1) % (int)n : -1;
}

struct rx_args {
  int fd;
  int stream;
  int cpu;
};

static void *receiver(void *p) {
  struct rx_args *a = p;
  static char buf[CHUNK];
  pin_to_cpu(a->cpu);
  struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
  setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  while (!atomic_load(&stop)) {
    ssize_t n = recv(a->fd, buf, sizeof(buf), 0);
    if (n > 0) atomic_fetch_add(&received, a->stream ? (unsigned long long)n : 1ull);
    else if (n == 0) break;
  }
  return NULL;
}

static int fail(const char *what) {
  fprintf(stderr, "throughput: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: throughput <tcp-stream|udp-flood|udp-sendto|sockets> <ipv4> <port> <duration_ms> [cpu]\n");
    return 2;
  }
  const char *mode = argv[1];
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
  if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) {
    fprintf(stderr, "throughput: bad IPv4 address %s\n", argv[2]);
    return 2;
  }
  uint64_t duration = (uint64_t)strtoull(argv[4], NULL, 10) * 1000000ull;
  int cpu = argc > 5 ? atoi(argv[5]) : -1;
  int stream = strcmp(mode, "tcp-stream") == 0;
  int sendto_mode = strcmp(mode, "udp-sendto") == 0;
  int sockets = strcmp(mode, "sockets") == 0;
  if (!stream && !sendto_mode && !sockets && strcmp(mode, "udp-flood") != 0) {
    fprintf(stderr, "throughput: unknown mode %s\n", mode);
    return 2;
  }
  unsigned long long ops = 0, bytes = 0, errors = 0;
  int first_errno = 0;
  pthread_t rx;
  struct rx_args args = {.fd = -1, .stream = stream, .cpu = other_cpu(cpu < 0 ? 0 : cpu)};
  int tx = -1, listener = -1;

  if (!sockets) {
    int one = 1;
    int sink = socket(AF_INET, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (sink < 0) return fail("socket");
    setsockopt(sink, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int big = 8 << 20;
    setsockopt(sink, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (bind(sink, (struct sockaddr *)&dst, sizeof(dst)) < 0) return fail("bind");
    tx = socket(AF_INET, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (tx < 0) return fail("socket");
    if (stream) {
      listener = sink;
      if (listen(listener, 1) < 0) return fail("listen");
      if (connect(tx, (struct sockaddr *)&dst, sizeof(dst)) < 0) return fail("connect");
      args.fd = accept(listener, NULL, NULL);
      if (args.fd < 0) return fail("accept");
    } else {
      args.fd = sink;
      if (!sendto_mode && connect(tx, (struct sockaddr *)&dst, sizeof(dst)) < 0) return fail("connect");
    }
    if (pthread_create(&rx, NULL, receiver, &args) != 0) return fail("pthread_create");
  }
  pin_to_cpu(cpu);

  static char buf[CHUNK];
  memset(buf, 'x', sizeof(buf));
  uint64_t cpu_start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  uint64_t start = now_ns(), end = start + duration, t = start;
  while (t < end) {
    for (int i = 0; i < 64; i++) {
      ssize_t n;
      if (sockets) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        n = s < 0 ? -1 : 0;
        if (s >= 0) close(s);
      } else if (stream) {
        n = send(tx, buf, CHUNK, 0);
      } else if (sendto_mode) {
        n = sendto(tx, buf, DATAGRAM, 0, (struct sockaddr *)&dst, sizeof(dst));
      } else {
        n = send(tx, buf, DATAGRAM, 0);
      }
      if (n < 0) {
        if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;  // a full queue is not a verdict
        if (!first_errno) first_errno = errno;
        errors++;
      } else {
        ops++;
        bytes += (unsigned long long)n;
      }
    }
    t = now_ns();
  }
  uint64_t elapsed = now_ns() - start;
  uint64_t cpu_used = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
  if (!sockets) {
    if (stream) shutdown(tx, SHUT_WR);
    usleep(stream ? 200000 : 50000);  // let the receiver drain what is in flight
    atomic_store(&stop, 1);
    pthread_join(rx, NULL);
  }
  unsigned long long got = atomic_load(&received);
  double secs = (double)elapsed / 1e9;
  double per_sec = stream ? (double)got / secs : (double)ops / secs;
  printf("{\"mode\":\"%s\",\"ops\":%llu,\"bytes\":%llu,\"received\":%llu,\"errors\":%llu,\"first_errno\":%d,"
         "\"elapsed_ns\":%llu,\"per_sec\":%.1f,\"bytes_per_sec\":%.1f,\"cpu_ns_per_op\":%.1f}\n",
         mode, ops, bytes, got, errors, first_errno, (unsigned long long)elapsed, per_sec,
         stream ? (double)got / secs : (double)bytes / secs, ops ? (double)cpu_used / (double)ops : 0.0);
  return 0;
}
