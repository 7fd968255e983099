# Build the agentq binary, then ship it alone on a small base (distroless:
# no shell, no curl; healthchecks run `agentq health` in exec form).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Version information: .git is not in the build context (.dockerignore), so
# Go's build info has no commit; pass it as build arguments, e.g.
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg COMMIT_TIME=$(git show -s --format=%cI HEAD) -t agentq .
# (docker-compose.yml passes them from VERSION, COMMIT and COMMIT_TIME).
# Unset, `agentq version` says (devel) and an empty commit. The -X names
# are version.go's variables: TestDockerfileLinkerFlags builds with this
# line's flags and reads them back from `agentq version --json`.
ARG VERSION=""
ARG COMMIT=""
ARG COMMIT_TIME=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/agentq/agentq.version=${VERSION} -X github.com/agentq/agentq.commit=${COMMIT} -X github.com/agentq/agentq.commitTime=${COMMIT_TIME}" -o /out/agentq ./cmd/agentq

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=""
ARG COMMIT=""
LABEL org.opencontainers.image.source="https://github.com/agentq/agentq" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/agentq /usr/local/bin/agentq
USER nonroot:nonroot
# Mount agentq.yaml here (docker-compose.yml and the Kubernetes manifests
# do): every command run in this directory finds it without --config, e.g.
# `docker-compose exec worker agentq dlq list`.
WORKDIR /etc/agentq
# worker.metrics_addr (when set to :9090) and the dashboard (--addr 0.0.0.0:8080).
EXPOSE 9090 8080
# Redis answers; compose services and Kubernetes probes check more
# (--worker, --dashboard URL). Kubernetes ignores HEALTHCHECK.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/agentq", "health"]
ENTRYPOINT ["/usr/local/bin/agentq"]
CMD ["worker"]
