// dns_load: the two processes of `pnpm bench:dns` that speak DNS. Everything cgroup/netns related is the
// caller's job (bench/dns/run.mjs): the stub runs in the bench's own cgroup inside the netns, the client joins
// the managed cgroup first, then enters the netns, then execs this program.
//
// Modes:
//   stub <ip> <port> <name>=<ipv4>...
//         A UDP resolver for the bench, nothing more: one blocking loop on <ip>:<port>. For a query whose one
//         question is class IN and type A, and whose name (compared byte for byte, lower case, no trailing dot)
//         is in the table, it answers that address with TTL 300; any other query gets NXDOMAIN. The question is
//         echoed as it came. Runs until killed.
//   query <ip> <port> <name> <count> <connected|fresh> [cpu]
//         <count> sequential A queries for <name>, each timed from before send() to after its answer was read.
//         connected: one UDP socket, connect()ed once (a resolver that keeps its socket);
//         fresh: socket() + connect() + send + recv + close() per query (what glibc's stub resolver does per
//         lookup): the connect, and so the dataplane's steering of it, is inside the timed span.
//         An answer must carry the query's id; one that does not arrive within a second counts as lost.
//         Output: {"mode":"connected","count":N,"noerror":N,"refused":N,"other_rcode":N,"lost":N,"errors":N,
//                  "first_errno":E,"p50_ns":N,"p99_ns":N,"mean_ns":N}
//   tcprefused <ip> <port> <duration_ms> [cpu]
//         socket() + connect() + close() in a loop to a TCP port nobody listens on, for a fixed time: an allowed
//         connect fails at once with ECONNREFUSED (every address of the netns is local), a refused one with EPERM,
//         so the loop measures the connect hook's verdict plus the cheapest possible connect.
//         Output: {"calls":N,"econnrefused":N,"eperm":N,"other_errors":N,"first_errno":E,"elapsed_ns":N,"per_sec":R}

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../load_common.h"

#define MAX_NAMES 16
#define MAX_MSG 512



static int parse_v4(const char *ip, const char *port_text, struct sockaddr_in *out) {
  char *end = NULL;
  long port = strtol(port_text, &end, 10);
  if (*port_text == '\0' || *end != '\0' || port < 1 || port > 65535) return -1;
  memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, ip, &out->sin_addr) == 1 ? 0 : -1;
}

// Writes `name` (dotted, no trailing dot) as DNS labels; returns the length or -1.
static int encode_name(const char *name, uint8_t *out, size_t cap) {
  size_t at = 0;
  const char *p = name;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || len > 63 || at + 1 + len + 1 > cap) return -1;
    out[at++] = (uint8_t)len;
    memcpy(out + at, p, len);
    at += len;
    p += len;
    if (*p == '.') p++;
  }
  if (at + 1 > cap) return -1;
  out[at++] = 0;
  return (int)at;
}

// Reads the uncompressed question name at msg[at..] into dotted text (lower-cased); returns the offset after it.
static int decode_name(const uint8_t *msg, int len, int at, char *out, size_t cap) {
  size_t o = 0;
  while (at < len) {
    uint8_t l = msg[at++];
    if (l == 0) {
      if (o == 0 && cap > 0) out[0] = '\0';
      else if (o > 0) out[o - 1] = '\0';
      return at;
    }
    if (l > 63 || at + l > len || o + l + 1 >= cap) return -1;
    for (int i = 0; i < l; i++) {
      char c = (char)msg[at + i];
      out[o++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[o++] = '.';
    at += l;
  }
  return -1;
}

struct entry {
  char name[256];
  struct in_addr addr;
};

static int run_stub(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: stub <ip> <port> <name>=<ipv4>...\n");
    return 2;
  }
  struct sockaddr_in listen_addr;
  if (parse_v4(argv[2], argv[3], &listen_addr) != 0) {
    fprintf(stderr, "bad address or port: %s %s\n", argv[2], argv[3]);
    return 2;
  }
  struct entry table[MAX_NAMES];
  int entries = 0;
  for (int i = 4; i < argc && entries < MAX_NAMES; i++) {
    const char *eq = strchr(argv[i], '=');
    size_t nlen = eq ? (size_t)(eq - argv[i]) : 0;
    if (!eq || nlen == 0 || nlen >= sizeof(table[0].name) || inet_pton(AF_INET, eq + 1, &table[entries].addr) != 1) {
      fprintf(stderr, "bad table entry (want name=ipv4): %s\n", argv[i]);
      return 2;
    }
    memcpy(table[entries].name, argv[i], nlen);
    table[entries].name[nlen] = '\0';
    entries++;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) != 0) {
    fprintf(stderr, "bind %s:%s failed: %s\n", argv[2], argv[3], strerror(errno));
    return 1;
  }
  // The caller waits for this line before sending anything.
  printf("{\"listening\":\"%s:%s\"}\n", argv[2], argv[3]);
  fflush(stdout);
  uint8_t msg[MAX_MSG + 16];
  for (;;) {
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    ssize_t n = recvfrom(fd, msg, MAX_MSG, 0, (struct sockaddr *)&peer, &plen);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "recvfrom: %s\n", strerror(errno));
      return 1;
    }
    // Header (12 bytes) and exactly one question; anything else is dropped (the bench sends nothing else).
    if (n < 12 || (msg[2] & 0x80) || msg[4] != 0 || msg[5] != 1) continue;
    char name[256];
    int qend = decode_name(msg, (int)n, 12, name, sizeof(name));
    if (qend < 0 || qend + 4 > n) continue;
    uint16_t qtype = (uint16_t)(msg[qend] << 8 | msg[qend + 1]);
    uint16_t qclass = (uint16_t)(msg[qend + 2] << 8 | msg[qend + 3]);
    int end = qend + 4;
    const struct entry *hit = NULL;
    if (qtype == 1 && qclass == 1) {
      for (int i = 0; i < entries; i++) {
        if (strcmp(table[i].name, name) == 0) hit = &table[i];
      }
    }
    // Reply: same id, QR + the query's RD, RA; one question, no authority, no additional records.
    msg[2] = (uint8_t)(0x80 | (msg[2] & 0x01));
    msg[3] = (uint8_t)(0x80 | (hit ? 0 : 3));
    msg[6] = 0;
    msg[7] = hit ? 1 : 0;
    memset(msg + 8, 0, 4);
    if (hit) {
      // Name: a pointer to the question (offset 12); type A, class IN, TTL 300, 4 bytes of address.
      const uint8_t rr[12] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4};
      memcpy(msg + end, rr, sizeof(rr));
      memcpy(msg + end + sizeof(rr), &hit->addr, 4);
      end += (int)sizeof(rr) + 4;
    }
    (void)sendto(fd, msg, (size_t)end, 0, (struct sockaddr *)&peer, plen);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int run_query(int argc, char **argv) {
  if (argc < 7 || argc > 8) {
    fprintf(stderr, "usage: query <ip> <port> <name> <count> <connected|fresh> [cpu]\n");
    return 2;
  }
  struct sockaddr_in server;
  if (parse_v4(argv[2], argv[3], &server) != 0) {
    fprintf(stderr, "bad address or port: %s %s\n", argv[2], argv[3]);
    return 2;
  }
  long count = strtol(argv[5], NULL, 10);
  int fresh;
  if (strcmp(argv[6], "fresh") == 0) fresh = 1;
  else if (strcmp(argv[6], "connected") == 0) fresh = 0;
  else {
    fprintf(stderr, "socket mode must be connected or fresh, got %s\n", argv[6]);
    return 2;
  }
  if (count < 1) {
    fprintf(stderr, "bad count: %s\n", argv[5]);
    return 2;
  }
  if (argc == 8) pin_to_cpu(atoi(argv[7]));
  uint8_t query[MAX_MSG];
  memset(query, 0, 12);
  query[2] = 0x01;  // RD
  query[5] = 1;     // QDCOUNT
  int qlen = encode_name(argv[4], query + 12, sizeof(query) - 16);
  if (qlen < 0) {
    fprintf(stderr, "bad name: %s\n", argv[4]);
    return 2;
  }
  qlen += 12;
  const uint8_t tail[4] = {0, 1, 0, 1};  // type A, class IN
  memcpy(query + qlen, tail, 4);
  qlen += 4;

  uint64_t *lat = calloc((size_t)count, sizeof(uint64_t));
  if (!lat) return 1;
  long timed = 0, noerror = 0, refused = 0, other_rcode = 0, lost = 0, errors = 0;
  int first_errno = 0;
  struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
  int fd = -1;
  uint8_t answer[MAX_MSG];
  for (long i = 0; i < count; i++) {
    uint16_t id = (uint16_t)(i * 7919 + 1);
    query[0] = (uint8_t)(id >> 8);
    query[1] = (uint8_t)id;
    uint64_t t0 = now_ns();
    if (fresh || fd < 0) {
      fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        return 1;
      }
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (connect(fd, (struct sockaddr *)&server, sizeof(server)) != 0) {
        if (!first_errno) first_errno = errno;
        errors++;
        close(fd);
        fd = -1;
        continue;
      }
      if (!fresh) t0 = now_ns();  // connected mode: the one connect is not part of any query
    }
    if (send(fd, query, (size_t)qlen, 0) != qlen) {
      if (!first_errno) first_errno = errno;
      errors++;
    } else {
      for (;;) {
        ssize_t n = recv(fd, answer, sizeof(answer), 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) lost++;
          else {
            if (!first_errno) first_errno = errno;
            errors++;
          }
          break;
        }
        // A late answer to an earlier (lost) query is skipped; the id says which query an answer is for.
        if (n < 12 || answer[0] != query[0] || answer[1] != query[1]) continue;
        lat[timed++] = now_ns() - t0;
        int rcode = answer[3] & 0x0f;
        if (rcode == 0 && (answer[6] | answer[7])) noerror++;
        else if (rcode == 5) refused++;
        else other_rcode++;
        break;
      }
    }
    if (fresh) {
      close(fd);
      fd = -1;
    }
  }
  uint64_t p50 = 0, p99 = 0;
  double mean = 0;
  if (timed > 0) {
    for (long i = 0; i < timed; i++) mean += (double)lat[i];
    mean /= (double)timed;
    qsort(lat, (size_t)timed, sizeof(uint64_t), cmp_u64);
    p50 = lat[(timed - 1) / 2];
    p99 = lat[(long)((double)(timed - 1) * 0.99)];
  }
  printf("{\"mode\":\"%s\",\"count\":%ld,\"noerror\":%ld,\"refused\":%ld,\"other_rcode\":%ld,\"lost\":%ld,"
         "\"errors\":%ld,\"first_errno\":%d,\"p50_ns\":%llu,\"p99_ns\":%llu,\"mean_ns\":%.0f}\n",
         argv[6], count, noerror, refused, other_rcode, lost, errors, first_errno, (unsigned long long)p50,
         (unsigned long long)p99, mean);
  return 0;
}

static int run_tcprefused(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: tcprefused <ip> <port> <duration_ms> [cpu]\n");
    return 2;
  }
  struct sockaddr_in t;
  if (parse_v4(argv[2], argv[3], &t) != 0) {
    fprintf(stderr, "bad address or port: %s %s\n", argv[2], argv[3]);
    return 2;
  }
  long duration_ms = strtol(argv[4], NULL, 10);
  if (duration_ms < 1) {
    fprintf(stderr, "bad duration_ms: %s\n", argv[4]);
    return 2;
  }
  if (argc == 6) pin_to_cpu(atoi(argv[5]));
  uint64_t calls = 0, refused = 0, eperm = 0, other = 0;
  int first_errno = 0;
  uint64_t start = now_ns(), deadline = start + (uint64_t)duration_ms * 1000000ull, now = start;
  while (now < deadline) {
    for (int i = 0; i < 32; i++) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        return 1;
      }
      if (connect(fd, (struct sockaddr *)&t, sizeof(t)) == 0) other++;
      else if (errno == ECONNREFUSED) refused++;
      else {
        if (!first_errno) first_errno = errno;
        if (errno == EPERM) eperm++;
        else other++;
      }
      close(fd);
      calls++;
    }
    now = now_ns();
  }
  uint64_t elapsed = now - start;
  printf("{\"calls\":%llu,\"econnrefused\":%llu,\"eperm\":%llu,\"other_errors\":%llu,\"first_errno\":%d,"
         "\"elapsed_ns\":%llu,\"per_sec\":%.1f}\n",
         (unsigned long long)calls, (unsigned long long)refused, (unsigned long long)eperm, (unsigned long long)other,
         first_errno, (unsigned long long)elapsed, (double)calls * 1e9 / (double)elapsed);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "stub") == 0) return run_stub(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "query") == 0) return run_query(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "tcprefused") == 0) return run_tcprefused(argc, argv);
  fprintf(stderr, "usage: %s stub|query|tcprefused ...\n", argv[0]);
  return 2;
}
