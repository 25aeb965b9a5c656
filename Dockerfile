# syntax=docker/dockerfile:1
# fedsec images: `--target coordinator` (SuperLink + ServerApp runtime) and `--target client`
# (SuperNode + ClientApp runtime). Both carry fedsec and every dependency, so flwr never
# installs anything at run time (FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1), run as a
# non-root user, and keep flwr's state in FLWR_HOME, a volume.
#
#   docker compose build          (or: docker build --target client -t fedsec-client:0.1.0 .)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- dependencies and fedsec, in a virtualenv copied whole into the runtime stages
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/fedsec
ENV PATH=/opt/fedsec/bin:$PATH
# The CPU build of torch first and exact: an unpinned torch pulls a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY pyproject.toml README.md LICENSE /src/
COPY common /src/common
COPY client /src/client
COPY server /src/server
COPY experiments /src/experiments
COPY fedsec /src/fedsec
COPY deploy/__init__.py deploy/app_guard.py deploy/launcher.py deploy/supernode.py /src/deploy/
RUN pip install /src && python -c "import torch, flwr, client.app, server.app, deploy.app_guard, deploy.launcher, deploy.supernode"

# ---- what both roles share: the virtualenv, a non-root user, quiet and offline flwr
FROM ${PYTHON_IMAGE} AS base
ARG FEDSEC_UID=1000
COPY --from=build /opt/fedsec /opt/fedsec
RUN groupadd --gid "${FEDSEC_UID}" fedsec \
    && useradd --uid "${FEDSEC_UID}" --gid fedsec --create-home --home-dir /home/fedsec fedsec \
    && install -d -o fedsec -g fedsec -m 0700 /home/fedsec/.flwr
ENV PATH=/opt/fedsec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLWR_HOME=/home/fedsec/.flwr \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/home/fedsec/.flwr"]

# ---- the coordinator: SuperLink; its ServerApp runs as a subprocess in this container
FROM base AS coordinator
RUN install -d -o fedsec -g fedsec /var/lib/fedsec /srv/fedsec /srv/fedsec/runs \
    && install -d -m 0755 /certs
WORKDIR /srv/fedsec
USER fedsec
EXPOSE 8000
VOLUME ["/var/lib/fedsec", "/srv/fedsec/runs"]
CMD ["flower-superlink", "--help"]

# ---- a data holder: SuperNode; its ClientApp reads /site (read-only) and writes /work
FROM base AS client
RUN install -d -m 0755 /site /certs /keys /etc/fedsec \
    && install -d -o fedsec -g fedsec /work
# flwr's SuperExec starts each task program by name from PATH. In /opt/fedsec/guard, first on
# PATH, `flwr-clientapp` is fedsec-clientapp (it checks the app against the data holder's
# FEDSEC_APPROVED_APPS before any of its code runs); flwr's other task programs link to it
# too and are refused (deploy/app_guard.py, SHIMS).
RUN test -x /opt/fedsec/bin/fedsec-clientapp \
    && install -d -m 0755 /opt/fedsec/guard \
    && for name in flwr-clientapp flwr-agentapp flwr-connector flwr-model flwr-serverapp \
        flwr-simulation; do ln -s /opt/fedsec/bin/fedsec-clientapp "/opt/fedsec/guard/$name"; done
ENV PATH=/opt/fedsec/guard:$PATH
WORKDIR /work
USER fedsec
VOLUME ["/work"]
CMD ["flower-supernode", "--help"]
