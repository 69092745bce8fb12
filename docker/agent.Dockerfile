# The agent image: the `interceptor-ebpf` binary (agent daemon and `ctl` client) on Debian 12, nothing else
# (no Node runtime, no shell tools needed at run time). Built by `pnpm docker:agent:build`
# (docker/build.sh agent), which compiles the binary with cargo on the build host and stages it here.
#
# Running the daemon needs, from the container runtime (see docker/compose.yaml, deploy/kubernetes/):
#   capabilities  BPF (maps, programs), PERFMON (the programs read task fields), NET_ADMIN (attach to the
#                 cgroup sock_addr hooks), CHOWN (give the control socket its group); FOWNER as well only if
#                 BROKER_EBPF_SOCKET_UID is not 0. Every other capability dropped. (Measured: the agent
#                 fails to start without any one of them, and needs no other; docs/deployment.md.)
#   mounts        the host's bpffs (read-write, for pins), the host's cgroup2 (read-only is enough: the agent
#                 opens cgroup directories to attach), the control socket directory
#   namespaces    the host's cgroup namespace (paths in /proc/<pid>/cgroup must mean the same to workloads and
#                 to the agent) and the host's pid namespace (event pids are the host's)
# The image's default user is the unprivileged 10001 (the socket's group), which is all the `ctl` client
# needs. The daemon must be started as uid 0 (`user: "0:0"`, `runAsUser: 0`): Docker and Kubernetes give no
# ambient capabilities to a non-root user; it keeps only the capabilities above.
ARG DEBIAN_IMAGE=debian:12-slim
FROM ${DEBIAN_IMAGE}

COPY interceptor-ebpf /usr/local/bin/interceptor-ebpf
# 10001: the group that owns the control socket; controllers run with it as a supplementary group.
RUN interceptor-ebpf --version \
 && groupadd --system --gid 10001 interceptor-ebpf-ctl \
 && useradd --system --uid 10001 --gid interceptor-ebpf-ctl --no-create-home --shell /usr/sbin/nologin interceptor-ebpf-ctl

ENV BROKER_EBPF_CONTROL_SOCKET=/run/broker-interceptor-ebpf/agentd.sock \
    BROKER_EBPF_SOCKET_MODE=0660 \
    BROKER_EBPF_SOCKET_UID=0 \
    BROKER_EBPF_SOCKET_GID=10001 \
    BROKER_EBPF_PIN_DIR=/sys/fs/bpf/broker-interceptor-ebpf \
    BROKER_EBPF_FAIL_MODE=closed \
    BROKER_EBPF_ENVIRONMENT=production

USER 10001:10001
ENTRYPOINT ["/usr/local/bin/interceptor-ebpf"]
CMD ["agent"]
