# syntax=docker/dockerfile:1
#
# fsx-csi-driver: one static binary on distroless/static (CA certificates, no shell, no
# lustre-client userspace: the driver calls mount(2) itself).
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/fsx-csi-driver:0.1.0 --push .
#
# The build stage runs on the build machine's platform and cross-compiles a static musl
# binary for each TARGETARCH with cargo-zigbuild (zig as the C cross compiler for aws-lc).

# The toolchain is pinned (Rust, zig, cargo-zigbuild), so a release rebuilds the same way.
FROM --platform=$BUILDPLATFORM rust:1.95.0-bookworm AS build
ARG TARGETARCH
ARG CARGO_ZIGBUILD_VERSION=0.21.8
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip cmake \
    && rm -rf /var/lib/apt/lists/* \
    && pip3 install --no-cache-dir --break-system-packages ziglang==0.13.0 \
    && cargo install --locked cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION"
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-$TARGETARCH \
    cargo zigbuild --release --locked -p fsx-csi-driver --target "$(cat /rust-target)" \
    && cp "target/$(cat /rust-target)/release/fsx-csi-driver" /fsx-csi-driver

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fsx-csi-driver" \
      org.opencontainers.image.description="CSI driver for Amazon FSx for Lustre (fsx.csi.aws.com)" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /fsx-csi-driver /fsx-csi-driver
# Non-root by default (the controller); the node DaemonSet runs it as root, privileged.
USER 65532:65532
ENTRYPOINT ["/fsx-csi-driver"]
