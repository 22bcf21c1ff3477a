# syntax=docker/dockerfile:1
# The operator image: `docker build -t infrakit-operator:dev .` (make image).
# Runs as UID 65532 with a read-only root filesystem; it writes only to the instance
# volume (/var/lib/infrakit/instances) and /tmp (an emptyDir in manifests/).
# Stages: build (a venv from pyproject.toml), dev (Tilt's live-update target), and the
# runtime image, last so that it is what a plain `docker build` makes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# A venv without pip or setuptools: the image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
WORKDIR /src
# The project and its pinned dependencies, without the test extras. README.md is the
# package's long description; infrakit/crds is a symlink to crds/.
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY infrakit/ infrakit/
RUN pip --python /opt/venv/bin/python install . \
 && /opt/venv/bin/infrakit-operator --help >/dev/null

FROM ${PYTHON_IMAGE} AS base
# USER: kopf names itself with getpass.getuser(), which fails for a UID without a
# passwd entry (a pod run with another runAsUser) unless $USER is set.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=infrakit \
    INFRAKIT_INSTANCE_DIR=/var/lib/infrakit/instances
# The slim image ships no bytecode for the standard library; compile it now (best effort), as a
# read-only root filesystem would make every start compile it again in memory.
RUN (python -m compileall -q /usr/local/lib/python3.11 || true) \
 && groupadd --system --gid 65532 infrakit \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin infrakit \
 && mkdir -p /var/lib/infrakit/instances \
 && chown 65532:65532 /var/lib/infrakit/instances
COPY --from=build /opt/venv /opt/venv
EXPOSE 8080 9090

# Tilt (Tiltfile): the sources at /app, ahead of the installed package on sys.path, so
# that Live Update can replace them in place. Writable by any user: the Tiltfile runs the
# pod as the host user (who owns the kind cluster's instance directory), not 65532.
FROM base AS dev
WORKDIR /app
COPY crds/ crds/
COPY infrakit/ infrakit/
RUN chown -R 65532:65532 /app && chmod -R a+rwX /app
ENV PYTHONPATH=/app
USER 65532:65532
ENTRYPOINT ["infrakit-operator"]

FROM base AS runtime
USER 65532:65532
ENTRYPOINT ["infrakit-operator"]
