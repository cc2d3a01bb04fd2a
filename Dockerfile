# Multi-stage image: build bftnode, ship only the binary (issue 11 item 3).
#   docker build -t bftnode .
#   docker run --rm bftnode --version
# The runtime image runs as an unprivileged user with its home in the volume /home/bftnode.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p cli --bin bftnode && strip target/release/bftnode

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/bftnode --uid 10001 bftnode
COPY --from=build /src/target/release/bftnode /usr/local/bin/bftnode
USER bftnode
VOLUME /home/bftnode
# QUIC (UDP) and RPC (TCP, keep it private).
EXPOSE 26600/udp 26700/tcp
ENTRYPOINT ["bftnode"]
CMD ["start", "--home", "/home/bftnode/node"]
