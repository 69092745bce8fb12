# The Docker lab's "host": a privileged Debian 12 container that runs its own dockerd, the interceptor-ebpf
# agent and a broker tunnel, and then the test service as a nested container whose cgroup the agent manages
# (docker/host-init.sh; driven by scripts/lab/docker/up.sh, status.sh, down.sh). It stands for a node of a
# real fleet: the agent enforces on the containers its Docker engine starts.
#
# DEBIAN_IMAGE: a Debian 12 image; packages come from Debian's mirror (no other registry is needed).
# Run it with --privileged, a private cgroup namespace and a volume at /var/lib/docker (overlay on overlay
# fails): see scripts/lab/docker/up.sh.
ARG DEBIAN_IMAGE=debian:12-slim
FROM ${DEBIAN_IMAGE}

# docker.io/containerd/runc: the nested engine; socat: the broker tunnel; iproute2/procps/curl: the
# scripts' checks. Versions are whatever Debian 12 ships with its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      docker.io containerd runc socat iproute2 procps curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY interceptor-ebpf /usr/local/bin/interceptor-ebpf
COPY host-init.sh /usr/local/bin/host-init.sh
RUN chmod 0755 /usr/local/bin/host-init.sh && interceptor-ebpf --version

ENV BROKER_EBPF_CONTROL_SOCKET=/run/broker-interceptor-ebpf/agentd.sock \
    EBPF_LAB_BROKER_TUNNEL_PORT=18081 \
    EBPF_LAB_BROKER_TARGET=broker:8081
VOLUME /var/lib/docker
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["interceptor-ebpf", "ctl", "health"]
ENTRYPOINT ["/usr/local/bin/host-init.sh"]
