# Multi-stage build of nixdeploy. The build step runs the same command as
# scripts/build, which .ci/run also runs, so CI proves this build works even
# where no Docker engine is available.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN ./scripts/build /out/nixdeploy

FROM debian:bookworm-slim
# CA certificates for the Slack API; an ssh client for diagnosing the
# runner and jump host from `fly ssh console`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin nixdeploy \
 && mkdir -p /data /etc/nixdeploy \
 && chown nixdeploy /data
COPY --from=build /out/nixdeploy /usr/local/bin/nixdeploy
COPY examples/fleet/nixdeploy.toml /etc/nixdeploy/nixdeploy.toml
USER nixdeploy
WORKDIR /data
ENV NIXDEPLOY_DB=/data/nixdeploy.db
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nixdeploy"]
CMD ["serve", "--listen", ":8080"]
