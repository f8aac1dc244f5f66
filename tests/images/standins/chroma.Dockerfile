# syntax=docker/dockerfile:1
#
# A stand-in for the official Chroma 1.x image (ghcr.io/chroma-core/chroma, chroma-core/chroma
# rust/Dockerfile, target `cli`), for the tests, where no registry is reachable. The same layout:
# Debian slim with dumb-init, ca-certificates and curl, `chroma` on PATH, Chroma's single-node
# config at /config.yaml, runs as root unless the pod says otherwise, and
#   ENTRYPOINT ["dumb-init", "--", "chroma"]   CMD ["run", "/config.yaml"]
# The difference: `chroma` is the CLI of the chromadb wheel the tests pin (constraints.txt), in a
# virtual environment, instead of the binary built from Rust sources.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG CHROMA_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY constraints.txt /tmp/constraints.txt
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends dumb-init ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/chroma \
 && /opt/chroma/bin/pip install --only-binary=:all: -c /tmp/constraints.txt "chromadb==${CHROMA_VERSION}" \
 && /opt/chroma/bin/python -m pip uninstall --yes pip \
 && ln -s /opt/chroma/bin/chroma /usr/local/bin/chroma \
 && rm /tmp/constraints.txt \
 && printf 'port: 8000\nlisten_address: "0.0.0.0"\npersist_path: "/data"\nallow_reset: false\n' > /config.yaml
ENV ANONYMIZED_TELEMETRY=FALSE
EXPOSE 8000
ENTRYPOINT ["dumb-init", "--", "chroma"]
CMD ["run", "/config.yaml"]
