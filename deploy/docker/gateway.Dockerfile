# The servemesh gateway. Build from the repository root with BuildKit (`make images`):
#   docker build -f deploy/docker/gateway.Dockerfile \
#     --secret id=pip.conf,src=build/docker/secrets/pip.conf \
#     --secret id=ca.crt,src=build/docker/secrets/ca.crt -t servemesh/gateway:0.1.0 .
# The secrets carry the host's package-index configuration and CA certificates to pip; they are
# mounted for one RUN and never stored in a layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/run/secrets/pip.conf
COPY requirements/mesh.txt /src/requirements/
COPY pyproject.toml /src/
COPY clients/python /src/clients/python
COPY gateway /src/gateway
COPY runtime /src/runtime
COPY predictors/__init__.py /src/predictors/
COPY deploy /src/deploy
COPY generated /src/generated
COPY labs/labkit /src/labs/labkit
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet pip==25.3 \
    && /opt/venv/bin/pip install --quiet -r /src/requirements/mesh.txt \
    && /opt/venv/bin/pip install --quiet --no-deps /src/clients/python /src \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app servemesh
COPY --from=venv /opt/venv /opt/venv
COPY deploy/mesh.toml /app/deploy/mesh.toml
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SERVEMESH_GATEWAY_ADDRESS=0.0.0.0:50051 SERVEMESH_METRICS_HOST=0.0.0.0
USER 10001
EXPOSE 50051 8000 9151
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "deploy.health_probe", "127.0.0.1:50051"]
ENTRYPOINT ["python", "-m", "gateway"]
