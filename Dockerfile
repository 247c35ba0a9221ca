# syntax=docker/dockerfile:1
# authpool image: the gateway (authpool-api), the rebalancer
# (authpool-rebalancer) and the Claude CLI the gateway runs.
#
#   docker build -t authpool .
#   docker run --rm -p 3000:3000 -e API_KEYS=change-me authpool   # embedded Redis, one replica
#   docker run ... -e REDIS_URL=redis://... authpool authpool-rebalancer
# (without API_KEYS the gateway listens on loopback only, unreachable through -p)
#
# Not built in this repository's CI (no Docker there); keep it plain.

ARG GO_VERSION=1.26
ARG NODE_VERSION=22

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/authpool-api ./cmd/api \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/authpool-rebalancer ./cmd/rebalancer

# Node is the Claude CLI's runtime.
FROM node:${NODE_VERSION}-bookworm-slim
# Pin the CLI for reproducible images: --build-arg CLAUDE_CODE_VERSION=x.y.z
ARG CLAUDE_CODE_VERSION=latest
# tini is PID 1 so that CLI processes (and anything they leave behind) are
# reaped; ca-certificates for the Go binaries' HTTPS (webhooks, fallback API, OTLP).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && npm install -g @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} \
 && npm cache clean --force \
 && groupadd --gid 10001 authpool \
 && useradd --uid 10001 --gid 10001 --home-dir /home/authpool --create-home --shell /usr/sbin/nologin authpool
COPY --from=build /out/authpool-api /out/authpool-rebalancer /usr/local/bin/
# The example config runs as it is (`config/auth-pool.json` relative to WORKDIR).
COPY config/ /app/config/
WORKDIR /app
# The image is immutable: the CLI must not try to update itself. HOME holds
# the subscriptions' ~/ config dirs (a volume in Kubernetes).
ENV HOME=/home/authpool \
    CLAUDE_BIN=/usr/local/bin/claude \
    DISABLE_AUTOUPDATER=1
USER 10001:10001
EXPOSE 3000 3001
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["authpool-api"]
