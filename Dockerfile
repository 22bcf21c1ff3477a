# The operator image: `docker build -t infrakit-operator:dev .`, or `make image` (tools/docker),
# which also builds it where no registry can be reached.
# No `# syntax=` line: it would make BuildKit pull a frontend image, and the builder's own
# Dockerfile frontend (BuildKit's or the classic builder's) understands everything below.
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
# wheels/ is in the context only when `make image` builds offline (tools/docker/operator_image.py:
# every dependency built into a wheel on the host): pip then never reaches an index. The
# `wheel[s]` pattern lets a plain `docker build .`, which has none, copy just pyproject.toml.
COPY pyproject.toml wheel[s] /wheels/
# kubernetes/aio (68 MB of the venv's 190) is the client's asyncio twin, which neither
# infrakit nor kopf imports (kopf talks to the API with aiohttp).
RUN if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links=/wheels; fi \
 && pip --python /opt/venv/bin/python install "$@" . \
 && rm -rf /opt/venv/lib/python3*/site-packages/kubernetes/aio \
 && /opt/venv/bin/infrakit-operator --help >/dev/null \
 && /opt/venv/bin/infrakit-local --help >/dev/null

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
# read-only root filesystem would make every start compile it again in memory. The stdlib is in
# /usr/local/lib on the official image and in /usr/lib on Debian's python3 (the stand-in).
RUN (python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" || true) \
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
