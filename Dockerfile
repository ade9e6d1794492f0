# highlander: multi-stage build. The runtime image holds only the binary, runs as a
# non-root user, keeps its state in /data (a volume) and checks its own health.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
# A workspace member: cargo reads its manifest even when it builds the relay alone.
COPY bench/highlander-bench ./bench/highlander-bench
RUN cargo build --release --locked -p highlander --bin highlander

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data highlander \
 && mkdir -p /data && chown highlander /data
COPY --from=build /src/target/release/highlander /usr/local/bin/highlander
USER highlander
WORKDIR /data
VOLUME ["/data"]
# remote_write, admin, raft RPC
EXPOSE 9091 9092 9093
ENV HIGHLANDER_DATA_DIR=/data \
    HIGHLANDER_ADMIN_LISTEN=0.0.0.0:9092
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9092/healthz || exit 1
ENTRYPOINT ["highlander"]
CMD ["serve"]
