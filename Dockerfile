# Build the agentq binary, then ship it alone on a small base (distroless:
# no shell, no curl; healthchecks run `agentq health` in exec form).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/agentq ./cmd/agentq

FROM gcr.io/distroless/static-debian12:nonroot
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
