# The interceptor-node test service (test-service/server.mjs) and the broker stand-in, on Node 20.
# Built by `pnpm docker:test-service:build` (docker/build.sh test-service) from a staged context that holds
# test-service/*.mjs only; the mTLS files are mounted at run time (/app/test-service/certs), never baked in.
#
# NODE_IMAGE: any Node 20 image on Debian 12; without a registry, docker/offline-base-images.sh makes one.
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}

WORKDIR /app
COPY test-service/ /app/test-service/

# The original service's defaults (see docs/labs.md). BROKER_FAIL_ON_MANIFEST_ERROR=false keeps the service up
# when the broker cannot be reached. OPENAI_API_KEY defaults, in server.mjs, to the original's interceptor
# placeholder key (int_..., which the broker swaps for a real one); pass it with -e to change it.
ENV NODE_ENV=production \
    PORT=3000 \
    BROKER_URL=https://localhost:8081 \
    BROKER_WORKLOAD_ID=w_f73d1dc18e9c41bc89c5928d5bc67230 \
    BROKER_MTLS_CERT_PATH=./test-service/certs/workload.crt \
    BROKER_MTLS_KEY_PATH=./test-service/certs/workload.key \
    BROKER_MTLS_CA_PATH=./test-service/certs/ca.crt \
    BROKER_LOG_LEVEL=debug \
    BROKER_FAIL_ON_MANIFEST_ERROR=false

# uid/gid 1000 ("node" in the Node images and in docker/node-from-binary.Dockerfile).
USER 1000:1000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/health`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "test-service/server.mjs"]
