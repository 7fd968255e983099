# Build the agentq binary, then ship it alone on a small base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/agentq ./cmd/agentq

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agentq /usr/local/bin/agentq
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/agentq"]
CMD ["worker"]
