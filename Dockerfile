# syntax=docker/dockerfile:1
# isiqbot: `docker build -t isiqbot .`, then `docker run --env-file .env isiqbot` (the service) or
# `docker run --env-file .env isiqbot migrate`. compose.yaml runs it with PostgreSQL, Redis and a proxy.
#
# PYTHON_IMAGE may name a mirror of the same image, or pin it by digest (…:3.11-slim-bookworm@sha256:…).
# Spelt out in full, since podman and buildah do not guess the registry of a short name.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- build: a virtual environment with the locked dependencies, then the project --------------
FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/isiqbot
ENV PATH=/opt/isiqbot/bin:$PATH
WORKDIR /src
# The dependencies first, so that a change of the code alone reuses this layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# pip byte-compiles what it installs, here: the running image cannot write beside the code.
# `pip check` fails when requirements.lock is older than pyproject.toml's dependencies.
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && pip uninstall --yes pip setuptools \
    && isiqbot --help >/dev/null

# --- runtime: the interpreter and the virtual environment, nothing else -------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/isiqbot/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
RUN groupadd --system --gid 10001 isiqbot \
    && useradd --system --uid 10001 --gid isiqbot --home-dir /var/lib/isiqbot --no-create-home \
        --shell /usr/sbin/nologin isiqbot \
    && install -d -o isiqbot -g isiqbot -m 0750 /var/lib/isiqbot /var/lib/isiqbot/data
COPY --from=build /opt/isiqbot /opt/isiqbot
# The working directory is the user's: the default SQLite database goes to ./data here
# (mount a volume on /var/lib/isiqbot/data to keep it), and a .env placed here is read.
WORKDIR /var/lib/isiqbot
USER 10001:10001
EXPOSE 8080
# /readyz: 200 only while the service does its job (polling, the outbox worker, the webhook).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HTTP_PORT', '8080') + '/readyz', timeout=4)"]
ENTRYPOINT ["isiqbot"]
CMD ["run"]
