# trips in a container: built with the Rust toolchain, run from a slim Debian image holding only the binary.
# The SQL of db/ is embedded in the binary, so nothing else is copied. See README.md, "Containers".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY db db
# The same build as scripts/run.sh.
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/trips /usr/local/bin/trips
RUN useradd --create-home --uid 10001 trips
USER trips
# Rejects files (--skip-invalid) are written to the working folder unless --rejects-dir says otherwise.
WORKDIR /home/trips
ENTRYPOINT ["trips"]
CMD ["--help"]
