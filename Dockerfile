# trips in a container: built with the Rust toolchain (its image has OpenSSL's headers), run from a slim Debian
# image holding the binary and the OpenSSL library.
# The SQL of db/ is embedded in the binary, so nothing else is copied. See docs/operations.md, "Containers".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY db db
# The same build as scripts/run.sh.
RUN cargo build --release --locked

FROM debian:bookworm-slim
# OpenSSL for TLS to the database (sslmode=...), and the system's authorities for sslrootcert=system.
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/trips /usr/local/bin/trips
RUN useradd --create-home --uid 10001 trips \
    && mkdir /rejects && chown trips /rejects
# /rejects: where docker-compose.yml's services write rejects files (a named volume takes this owner).
USER trips
# Rejects files (--skip-invalid) are written to the working folder unless --rejects-dir says otherwise.
WORKDIR /home/trips
ENTRYPOINT ["trips"]
CMD ["--help"]
