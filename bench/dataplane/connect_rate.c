// connect_rate: the load generator of `pnpm bench:dataplane`.
//
// It calls connect() in a tight loop on one pinned CPU for a fixed wall-clock time and prints one JSON line
// with what happened. Everything cgroup/netns related is the caller's job: the bench joins the cgroup first,
// then enters the network namespace, then execs this program, so the hooks that fire are exactly the ones
// attached above that cgroup and the only firewall in play is the one of that namespace.
//
// Modes:
//   tcp   socket() + connect() to a listening socket on <ip>:<port> + close(); a second thread (pinned to
//         the other CPU when there is one) accepts and closes. SO_LINGER{1,0} makes the client close with a
//         RST so the run never stalls on TIME_WAIT exhaustion of the ephemeral port range.
//   udp   one UDP socket, connect() again and again to <ip>:<port>. A UDP connect has no handshake, so the
//         time per call is the syscall plus the cgroup/connect hook: the hook cost undiluted.
//   udpsend  one unconnected UDP socket, sendto() of 1 byte again and again to <ip>:<port>: the sendmsg hook
//         runs on every call. A receiver socket bound to <ip>:<port> in this process never reads, so after its
//         small buffer fills every datagram is dropped on arrival (loopback: the receive path runs on the
//         sending CPU, the same work for every configuration).
//
// A refused connect (EPERM from the dataplane or iptables) is counted, not fatal: the events benchmark
// drives the deny path on purpose, since every deny is emitted (deny events are never sampled).
//
// Usage: connect_rate <tcp|udp|udpsend> <ipv4|ipv6> <port> <duration_ms> [client_cpu]
// Output: {"mode":"udp","calls":N,"ok":N,"eperm":N,"other_errors":N,"first_errno":E,"elapsed_ns":N,"per_sec":R}

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

static atomic_int stop_accepting;



struct target {
  struct sockaddr_storage addr;
  socklen_t len;
  int family;
};

static int parse_target(const char *ip, const char *port_text, struct target *t) {
  char *end = NULL;
  long port = strtol(port_text, &end, 10);
  if (*port_text == '\0' || *end != '\0' || port < 1 || port > 65535) return -1;
  memset(t, 0, sizeof(*t));
  struct sockaddr_in *v4 = (struct sockaddr_in *)&t->addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->addr;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    t->len = sizeof(*v4);
    t->family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    t->len = sizeof(*v6);
    t->family = AF_INET6;
    return 0;
  }
  return -1;
}

struct acceptor {
  int fd;
  int cpu;
};

static void *accept_loop(void *arg) {
  struct acceptor *a = arg;
  pin_to_cpu(a->cpu);
  while (!atomic_load_explicit(&stop_accepting, memory_order_relaxed)) {
    int c = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) close(c);
    // EAGAIN (the listener has a receive timeout so this thread notices the stop flag), ECONNABORTED (the
    // client's RST won the race): both are expected and ignored.
  }
  return NULL;
}

static int start_listener(const struct target *t) {
  int fd = socket(t->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (bind(fd, (const struct sockaddr *)&t->addr, t->len) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: %s <tcp|udp|udpsend> <ip> <port> <duration_ms> [client_cpu]\n", argv[0]);
    return 2;
  }
  int tcp = 0, send = 0;
  if (strcmp(argv[1], "tcp") == 0) tcp = 1;
  else if (strcmp(argv[1], "udp") == 0) tcp = 0;
  else if (strcmp(argv[1], "udpsend") == 0) send = 1;
  else {
    fprintf(stderr, "mode must be tcp, udp or udpsend, got %s\n", argv[1]);
    return 2;
  }
  struct target t;
  if (parse_target(argv[2], argv[3], &t) != 0) {
    fprintf(stderr, "bad address or port: %s %s\n", argv[2], argv[3]);
    return 2;
  }
  char *end = NULL;
  long duration_ms = strtol(argv[4], &end, 10);
  if (*end != '\0' || duration_ms < 1) {
    fprintf(stderr, "bad duration_ms: %s\n", argv[4]);
    return 2;
  }
  int client_cpu = -1;
  if (argc == 6) client_cpu = atoi(argv[5]);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

  pthread_t acceptor_thread;
  struct acceptor acc = {.fd = -1, .cpu = -1};
  if (tcp) {
    acc.fd = start_listener(&t);
    if (acc.fd < 0) {
      fprintf(stderr, "listen on %s:%s failed: %s\n", argv[2], argv[3], strerror(errno));
      return 1;
    }
    if (client_cpu >= 0 && ncpu > 1) acc.cpu = (int)((client_cpu + 1) % ncpu);
    if (pthread_create(&acceptor_thread, NULL, accept_loop, &acc) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  pin_to_cpu(client_cpu);

  int udp_fd = -1, sink_fd = -1;
  if (!tcp) {
    udp_fd = socket(t.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (udp_fd < 0) {
      fprintf(stderr, "socket failed: %s\n", strerror(errno));
      return 1;
    }
  }
  if (send) {
    sink_fd = socket(t.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int small = 1;
    setsockopt(sink_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    if (sink_fd < 0 || bind(sink_fd, (const struct sockaddr *)&t.addr, t.len) != 0) {
      fprintf(stderr, "bind the receiver on %s:%s failed: %s\n", argv[2], argv[3], strerror(errno));
      return 1;
    }
  }
  const char payload = 'x';

  uint64_t calls = 0, ok = 0, eperm = 0, other = 0;
  int first_errno = 0;
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  uint64_t start = now_ns();
  uint64_t deadline = start + (uint64_t)duration_ms * 1000000ull;
  uint64_t now = start;
  // Reading the clock every 64 calls keeps its cost out of the loop without overshooting the deadline by
  // more than a few microseconds (or one slow connect under a 100,000 rule iptables chain).
  while (now < deadline) {
    for (int i = 0; i < 64; i++) {
      int rc;
      if (tcp) {
        int fd = socket(t.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
          fprintf(stderr, "socket failed: %s\n", strerror(errno));
          return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        rc = connect(fd, (const struct sockaddr *)&t.addr, t.len);
        if (rc != 0 && first_errno == 0) first_errno = errno;
        if (rc != 0 && errno == EPERM) eperm++;
        else if (rc != 0) other++;
        else ok++;
        close(fd);
      } else {
        if (send)
          rc = sendto(udp_fd, &payload, 1, 0, (const struct sockaddr *)&t.addr, t.len) == 1 ? 0 : -1;
        else
          rc = connect(udp_fd, (const struct sockaddr *)&t.addr, t.len);
        if (rc != 0 && first_errno == 0) first_errno = errno;
        if (rc != 0 && errno == EPERM) eperm++;
        else if (rc != 0) other++;
        else ok++;
      }
      calls++;
      if (tcp && i % 8 == 7 && (now = now_ns()) >= deadline) break;
    }
    now = now_ns();
  }
  uint64_t elapsed = now - start;

  if (tcp) {
    atomic_store(&stop_accepting, 1);
    pthread_join(acceptor_thread, NULL);
    close(acc.fd);
  } else {
    close(udp_fd);
    if (sink_fd >= 0) close(sink_fd);
  }
  printf("{\"mode\":\"%s\",\"calls\":%llu,\"ok\":%llu,\"eperm\":%llu,\"other_errors\":%llu,"
         "\"first_errno\":%d,\"elapsed_ns\":%llu,\"per_sec\":%.1f}\n",
         argv[1], (unsigned long long)calls, (unsigned long long)ok, (unsigned long long)eperm,
         (unsigned long long)other, first_errno, (unsigned long long)elapsed, (double)calls * 1e9 / (double)elapsed);
  return 0;
}
