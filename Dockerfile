# idnode container image: `docker build -t idnode .` then
#   docker run -p 8000:8000 -v idnode-data:/var/lib/idnode idnode
# The node runs as an unprivileged user with its registry on the /var/lib/idnode volume.
# For writes from outside the container, serve HTTPS: mount a certificate and key at
# /etc/idnode/tls/ and set http.tls_cert / http.tls_key in a config of your own
# (see config/enterprise.toml), e.g. -v $PWD/my.toml:/etc/idnode/idnode.toml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY config config
COPY benches benches
RUN cargo build --release --locked --bin idnode

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/idnode --shell /usr/sbin/nologin idnode \
    && mkdir -p /var/lib/idnode /etc/idnode \
    && chown idnode /var/lib/idnode
COPY --from=build /src/target/release/idnode /usr/local/bin/idnode
COPY config/docker.toml /etc/idnode/idnode.toml
USER idnode
VOLUME /var/lib/idnode
EXPOSE 8000 2641/tcp 2641/udp 5300/tcp 5300/udp
ENTRYPOINT ["idnode"]
CMD ["serve", "--config", "/etc/idnode/idnode.toml"]
