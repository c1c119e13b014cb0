# homelab-agents worker / intake image. Secrets come from the environment or mounted files at run
# time; nothing from .env or the config is baked in.
#
# BASE: any Debian-based image with Python >= 3.11 and its venv module. The default comes from
# Docker Hub; to build with no registry, make a base from Debian's packages first:
#   deploy/scripts/debian-base-image.sh local/debian-python:bookworm
#   docker build --network host --build-arg BASE=local/debian-python:bookworm -t homelab-agents .
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True HOMELAB_CONFIG=/etc/homelab-agents/homelab.yaml
WORKDIR /app
# openssl: certs.chain verifies chains with `openssl verify`, as clients do. restic, borg and
# certbot run on the hosts that hold the repositories and certificates (backups/certs targets
# with ssh:); install them in a derived image to use them from the worker itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
# A venv on every base: Debian's own Python refuses pip outside one (PEP 668).
RUN python3 -m venv /opt/homelab-agents
ENV PATH=/opt/homelab-agents/bin:$PATH
# Offline or pinned builds: serve a wheelhouse (pip download -d DIR ...; python3 -m http.server)
# and pass --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://127.0.0.1:PORT/
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
COPY pyproject.toml README.md ./
COPY core ./core
COPY workflows ./workflows
COPY activities ./activities
COPY approval ./approval
COPY workers ./workers
COPY runbooks ./runbooks
RUN pip install -e . \
 && useradd --system --uid 10001 --home /var/lib/homelab-agents homelab \
 && mkdir -p /var/lib/homelab-agents /etc/homelab-agents \
 && chown homelab /var/lib/homelab-agents
USER homelab
ENV HOMELAB_TEMPORAL__STATE_DIR=/var/lib/homelab-agents
EXPOSE 8080 9464
ENTRYPOINT ["homelab-agents"]
CMD ["worker"]
