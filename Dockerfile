# syntax=docker/dockerfile:1
# The operator image: `make image` (daemonless, tools/build_image.sh), or
# `docker build -t sidecarset:0.1.0 .` at the repository root.
# Multi-stage: the builder turns the source into a wheel and installs it with its runtime
# dependencies (never the dev extras) into a virtualenv; the runtime stage is the same base image
# plus that virtualenv, run as a numeric non-root user (the chart's runAsUser).
#
# The base is pinned to an exact patch release. Pin the digest too once you have pulled it:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm  ->  python:3.11.14-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
# Runtime dependencies first, exactly as locked (versions and hashes), in their own layer: a
# source change rebuilds only the last step. Every one ships a manylinux wheel for CPython 3.11,
# so no compiler is needed or present.
COPY requirements.lock ./
RUN python -m venv /opt/sidecarset \
 && /opt/sidecarset/bin/pip install --require-hashes --only-binary=:all: --no-deps \
        -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/sidecarset/bin/pip install --no-deps . \
 && /opt/sidecarset/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/sidecarset/bin/sidecarset --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sidecarset" \
      org.opencontainers.image.description="SidecarSet operator: sidecar injection and in-place upgrades" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same path as in the builder, so the virtualenv's scripts and interpreter link stay valid.
COPY --from=builder /opt/sidecarset /opt/sidecarset
# The root filesystem is read-only in the chart: bytecode was compiled at install time.
ENV PATH=/opt/sidecarset/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 9443: HTTPS webhooks; 8080: /healthz, /readyz, /metrics.
EXPOSE 9443 8080
ENTRYPOINT ["sidecarset"]
CMD ["operator", "run"]
