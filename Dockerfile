# Backprop: a release build in a Rust image, run from a small Debian image as a non-root user.
# It refuses to serve without API keys: run it with -e BACKPROP_API_KEYS=tenant:role:secret
# (or a keys file in the volume, made with `backprop keys create`).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY migrations migrations
COPY openapi.yaml ./
RUN cargo build --release --locked && strip target/release/backprop

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/backprop backprop
COPY --from=build /src/target/release/backprop /usr/local/bin/backprop
USER backprop
ENV BACKPROP_LISTEN=0.0.0.0:8080 \
    BACKPROP_DATA_DIR=/var/lib/backprop \
    BACKPROP_LOG_FORMAT=json
VOLUME /var/lib/backprop
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["backprop", "healthcheck"]
ENTRYPOINT ["backprop"]
CMD ["serve"]
