# A Node.js base image made of a Debian 12 image and a `node` binary from the build context: what
# docker/offline-base-images.sh builds when no registry is reachable. With a registry, use node:20-bookworm-slim.
ARG BASE_IMAGE=debian:12-slim
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
RUN node --version \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
CMD ["node"]
