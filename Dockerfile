# s3mount container image. Not built in this repository's CI (no container engine there):
# see deploy/kubernetes/README.md for what is and is not verified.
#
#   docker build -t s3mount .
#   docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --user root \
#     -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     s3mount mount my-bucket/data /mnt/s3 --foreground
#
# Build stage: the toolchain the code needs (edition 2024, let-chains: Rust 1.88 or later).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/s3mount

# Runtime stage: fuse3 brings fusermount3 (mounting as a non-root user, lazy unmounts),
# ca-certificates the roots for HTTPS endpoints.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends fuse3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin s3mount \
    && mkdir -p /mnt/s3 && chown s3mount: /mnt/s3
COPY --from=build /src/target/release/s3mount /usr/local/bin/s3mount
# Non-root by default; mounting needs /dev/fuse and either root with CAP_SYS_ADMIN or the
# setuid fusermount3 (which a runtime with no_new_privs blocks). The Kubernetes examples
# run as root in a privileged container, as Bidirectional mount propagation requires.
USER s3mount
ENTRYPOINT ["/usr/local/bin/s3mount"]
CMD ["--help"]
