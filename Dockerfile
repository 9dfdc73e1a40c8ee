# syntax=docker/dockerfile:1
# The operator's image: built from source on Rust's official image, run on distroless (glibc,
# CA certificates and nothing else: no shell, no package manager) as the non-root user 65532.
#
#   docker build -t ghcr.io/flowrun-dev/flowrun-operator:0.1.0 .
#
# The chart's default image (charts/flowrun-operator/values.yaml) is this one: tests/chart
# keeps its tag (Cargo.toml's version), user and port in step with this file. hack/image.sh
# builds the same image without Docker (same binary, user, entrypoint, port and labels:
# tests/image.rs checks them against this file) and tests/image.rs runs it with runc.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# .dockerignore lets in only the workspace's manifests and sources (src/, crates/, benches/).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin flowrun-operator \
    && cp target/release/flowrun-operator /usr/local/bin/flowrun-operator

# Same Debian release as the build stage, so the binary finds the glibc it was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flowrun-operator /usr/local/bin/flowrun-operator
USER 65532:65532
LABEL org.opencontainers.image.title="flowrun-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs Amazon AppFlow flows from FlowRun custom resources" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/flowrun-dev/flowrun-operator" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
# /metrics, /healthz and /readyz (--metrics-address, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flowrun-operator"]
