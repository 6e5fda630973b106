"""API keys, TLS, mTLS and the message-size limit on real gateway and predictor processes,
through the SDK, the CLI, the bench and grpcurl."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx2
import openai
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.settings import parse_settings
from runtime.auth import ApiKeys
from servemesh import (
    AsyncClient,
    Client,
    ResourceExhausted,
    ServemeshError,
    Unauthenticated,
    Unavailable,
)
from tests.certs import Certs, make_certs
from tests.servers import BIN, MODEL, ServerProcess, gateway, llama_predictor, mesh_config

FILE_KEY, HASHED_KEY, ENV_KEY, MTLS_KEY = "file-key-1", "hashed-key-2", "env-key-3", "mtls-key-4"
SMALL = ("--max-sequences", "2", "--n-ctx", "512")  # the KV cache of a test predictor
GATEWAY_MAX_MESSAGE_BYTES = 1024 * 1024


def with_env(process: ServerProcess, **variables: str) -> ServerProcess:
    """The same process, started with more environment variables (servers.py passes none)."""
    process.command = ["env", *(f"{k}={v}" for k, v in variables.items()), *process.command]
    return process


def start_secure(
    process: ServerProcess, needs: tuple[ServerProcess, ...] = (), **client_options: Any
) -> ServerProcess:
    """Starts `process` and waits for health SERVING through a client with `client_options`
    (TLS files, key), since servers.py polls with a plaintext channel and no key."""
    process.start(wait=False)
    assert process.address is not None
    deadline = time.monotonic() + 120
    while True:
        try:
            with Client(process.address, timeout=1, max_attempts=1, **client_options) as c:
                if c.health() == "SERVING":
                    return process
        except ServemeshError:
            pass
        for proc in (process, *needs):
            if proc.process is not None and proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            process.stop()
            raise TimeoutError(f"{process.name} not SERVING:\n{process.log_tail()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-tls")


@pytest.fixture(scope="module")
def backend(logs: Path) -> Iterator[ServerProcess]:
    """A plaintext llama predictor behind the gateways: their own port is what is tested."""
    predictor, _ = llama_predictor(logs, "llama-backend", *SMALL)
    try:
        yield predictor.start(timeout=120)
    finally:
        predictor.stop()


@pytest.fixture(scope="module")
def keyed(logs: Path, certs: Certs, backend: ServerProcess) -> Iterator[ServerProcess]:
    """A TLS gateway with keys from a file (one plaintext, one hashed) and the environment."""
    key_file = logs / "keys.txt"
    hashed = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    key_file.write_text(f"# plaintext and hashed keys\n\n{FILE_KEY}\n  sha256:{hashed}  \n")
    front = gateway(logs, mesh_config(backend.address), "gateway-keyed")
    front.command += [
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--api-key-file",
        str(key_file),
        "--max-message-bytes",
        str(GATEWAY_MAX_MESSAGE_BYTES),
    ]
    with_env(front, SERVEMESH_GATEWAY_API_KEYS=f"other-key, {ENV_KEY}")
    try:
        yield start_secure(front, (backend,), tls_ca=str(certs.ca))
    finally:
        front.stop()


@pytest.fixture(scope="module")
def mtls(logs: Path, certs: Certs, backend: ServerProcess) -> Iterator[ServerProcess]:
    """An mTLS gateway whose health and reflection need the key too."""
    front = gateway(logs, mesh_config(backend.address), "gateway-mtls")
    front.command += [
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--tls-client-ca",
        str(certs.ca),
        "--auth-health-reflection",
    ]
    with_env(front, SERVEMESH_GATEWAY_API_KEYS=MTLS_KEY)
    try:
        yield start_secure(front, (backend,), api_key=MTLS_KEY, **client_files(certs))
    finally:
        front.stop()


def client_files(certs: Certs) -> dict[str, str]:
    return {
        "tls_ca": str(certs.ca),
        "tls_cert": str(certs.client_cert),
        "tls_key": str(certs.client_key),
    }


def call(client: Client, kind: str) -> str:
    """A short greedy generation, unary or streamed."""
    if kind == "unary":
        return client.predict(MODEL, prompt="The sky is", max_tokens=4, temperature=0).text
    chunks = client.predict_stream(MODEL, prompt="The sky is", max_tokens=4, temperature=0)
    return "".join(c.text for c in chunks)


def list_services(address: str, credentials: grpc.ChannelCredentials, key: str = "") -> list[str]:
    """The services that server reflection lists."""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.secure_channel(address, credentials) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=10, metadata=metadata)
        return [s.name for r in responses for s in r.list_services_response.service]


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_call_without_a_key_is_unauthenticated(keyed, certs, kind: str) -> None:
    client = Client(keyed.address, tls_ca=str(certs.ca))
    with client, pytest.raises(Unauthenticated) as caught:
        call(client, kind)
    assert caught.value.reason == "API_KEY_MISSING"
    assert "authorization: Bearer" in caught.value.message


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_wrong_key_is_unauthenticated(keyed, certs, kind: str) -> None:
    client = Client(keyed.address, tls_ca=str(certs.ca), api_key=FILE_KEY + "x")
    with client, pytest.raises(Unauthenticated) as caught:
        call(client, kind)
    assert caught.value.reason == "API_KEY_INVALID"


@pytest.mark.parametrize("kind", ["unary", "stream"])
@pytest.mark.parametrize("key", [FILE_KEY, HASHED_KEY, ENV_KEY], ids=["file", "hashed", "env"])
def test_an_accepted_key_runs_the_model(keyed, certs, key: str, kind: str) -> None:
    with Client(keyed.address, tls_ca=str(certs.ca), api_key=key) as client:
        assert call(client, kind).strip()
        assert MODEL in [m.name for m in client.list_models()]
        assert client.get_model(MODEL).streaming


def test_health_and_reflection_are_open_without_a_key_by_default(keyed, certs) -> None:
    with Client(keyed.address, tls_ca=str(certs.ca)) as client:
        assert client.health() == "SERVING"
        assert client.health(f"model/{MODEL}") == "SERVING"
    credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
    assert "servemesh.v1.PredictionService" in list_services(keyed.address, credentials)


async def test_async_client_with_key_and_tls(keyed, certs) -> None:
    async with AsyncClient(keyed.address, tls_ca=str(certs.ca), api_key=ENV_KEY) as client:
        assert await client.health() == "SERVING"
        assert (await client.predict(MODEL, prompt="Hi", max_tokens=3, temperature=0)).text
        chunks = [c async for c in client.predict_stream(MODEL, prompt="Hi", max_tokens=3)]
        assert chunks[-1].finish_reason
    async with AsyncClient(keyed.address, tls_ca=str(certs.ca)) as client:
        with pytest.raises(Unauthenticated):
            await client.list_models()


def test_a_plaintext_client_is_refused_by_the_tls_port(keyed) -> None:
    client = Client(keyed.address, api_key=FILE_KEY, max_attempts=1, timeout=10)
    with client, pytest.raises(Unavailable):
        client.health()


def test_a_server_certificate_from_another_ca_is_refused(keyed, certs) -> None:
    client = Client(keyed.address, tls_ca=str(certs.other_ca), max_attempts=1, timeout=10)
    with client, pytest.raises(Unavailable):
        client.health()


def test_messages_over_the_servers_limit_are_resource_exhausted(keyed, certs) -> None:
    client = Client(keyed.address, tls_ca=str(certs.ca), api_key=FILE_KEY)
    with client, pytest.raises(ResourceExhausted):
        client.predict(MODEL, prompt="x" * (GATEWAY_MAX_MESSAGE_BYTES + 1), max_tokens=1)


def test_messages_over_the_clients_limit_are_not_sent(keyed, certs) -> None:
    options = {"tls_ca": str(certs.ca), "api_key": FILE_KEY, "max_message_bytes": 1000}
    with Client(keyed.address, **options) as client, pytest.raises(ResourceExhausted):
        client.predict(MODEL, prompt="x" * 2000, max_tokens=1)


def test_mtls_accepts_a_client_certificate(mtls, certs) -> None:
    with Client(mtls.address, api_key=MTLS_KEY, **client_files(certs)) as client:
        assert call(client, "stream").strip()


def test_mtls_refuses_a_client_without_a_certificate(mtls, certs) -> None:
    client = Client(mtls.address, tls_ca=str(certs.ca), api_key=MTLS_KEY, max_attempts=1)
    with client, pytest.raises(Unavailable):
        client.health()


def test_health_and_reflection_can_require_the_key(mtls, certs) -> None:
    client = Client(mtls.address, **client_files(certs))
    with client, pytest.raises(Unauthenticated):
        client.health()
    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    with pytest.raises(grpc.RpcError) as caught:
        list_services(mtls.address, credentials)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "servemesh.v1.PredictionService" in list_services(mtls.address, credentials, MTLS_KEY)


def servemesh(address: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "servemesh"), "--target", address, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_cli_with_a_key_and_tls(keyed, certs) -> None:
    tls = ["--tls-ca", str(certs.ca)]
    listed = servemesh(keyed.address, *tls, "models", SERVEMESH_API_KEY=FILE_KEY)
    assert listed.returncode == 0 and MODEL in listed.stdout, listed.stderr
    streamed = servemesh(
        keyed.address, *tls, "--api-key", HASHED_KEY, "stream", MODEL, "Hi", "--max-tokens", "4"
    )
    assert streamed.returncode == 0 and streamed.stdout.strip(), streamed.stderr
    refused = servemesh(keyed.address, *tls, "predict", MODEL, "Hi", "--max-tokens", "4")
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    assert "--api-key" in refused.stderr  # the message says how to send one


def test_cli_with_a_client_certificate_from_the_environment(mtls, certs) -> None:
    result = servemesh(
        mtls.address,
        "health",
        SERVEMESH_API_KEY=MTLS_KEY,
        SERVEMESH_TLS_CA=str(certs.ca),
        SERVEMESH_TLS_CERT=str(certs.client_cert),
        SERVEMESH_TLS_KEY=str(certs.client_key),
    )
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


def test_bench_with_a_key_keeps_it_out_of_its_report(keyed, certs, tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = servemesh(
        keyed.address,
        "--tls-ca",
        str(certs.ca),
        "bench",
        *("--url", f"grpc://{keyed.address}", "--model", MODEL, "--num-prompts", "2"),
        *("--input-len", "4", "--output-len", "4", "--out", str(out)),
        SERVEMESH_API_KEY=ENV_KEY,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = out.read_text()
    assert json.loads(report)["results"][0]["completed"] == 2
    assert ENV_KEY not in report


def grpcurl(certs: Certs, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "grpcurl"), "-max-time", "30", "-cacert", str(certs.ca), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_grpcurl_with_a_key_and_the_ca(keyed, certs) -> None:
    listed = grpcurl(certs, keyed.address, "list")  # reflection needs no key
    assert "servemesh.v1.PredictionService" in listed.stdout, listed.stderr
    generation = {"prompt": "Hi", "parameters": {"max_tokens": 4}}
    body = json.dumps({"model": MODEL, "text_generation": generation})
    method = "servemesh.v1.PredictionService/Predict"
    result = grpcurl(
        certs, "-H", f"authorization: Bearer {FILE_KEY}", "-d", body, keyed.address, method
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text_generation"]["text"]
    refused = grpcurl(certs, "-d", body, keyed.address, method)
    assert "Unauthenticated" in refused.stderr and "API_KEY_MISSING" in refused.stderr


def test_predictor_serves_tls_and_api_keys(logs, certs) -> None:
    key_file = logs / "predictor-keys.txt"
    key_file.write_text("predictor-key\n")
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    predictor, _ = llama_predictor(logs, "llama-tls", *SMALL, *tls, "--api-key-file", str(key_file))
    try:
        start_secure(predictor, tls_ca=str(certs.ca))
        client = Client(predictor.address, tls_ca=str(certs.ca))
        with client, pytest.raises(Unauthenticated):
            call(client, "unary")
        with Client(predictor.address, tls_ca=str(certs.ca), api_key="predictor-key") as c:
            assert call(c, "unary").strip()
        # The gateway reaches it over TLS with the predictor's key, from its backend table.
        options = f'tls_ca = "{certs.ca}"\napi_key_env = "PREDICTOR_KEY"'
        config = mesh_config(predictor.address, llama_options=options)
        front = with_env(gateway(logs, config, "gw-to-tls"), PREDICTOR_KEY="predictor-key")
        try:
            front.start(needs=(predictor,))
            with Client(front.address) as c:
                assert call(c, "unary").strip() and call(c, "stream").strip()
        finally:
            front.stop()
    finally:
        predictor.stop()


def test_api_key_file_lines(tmp_path) -> None:
    path = tmp_path / "keys"
    digest = hashlib.sha256(b"b").hexdigest()
    path.write_text(f"# comment\n\n a \nsha256:{digest.upper()}\n")
    keys = ApiKeys.load(str(path), " c ,, ")
    assert keys is not None and len(keys) == 3
    assert [keys.accepts(k) for k in ("a", "b", "c", "d", " a", "")] == [True] * 3 + [False] * 3
    assert ApiKeys.load(None, "") is None


@pytest.mark.parametrize(
    ("flags", "content", "message"),
    [
        (["--tls-cert", "{certs.server_cert}"], None, "--tls-key"),
        (["--tls-client-ca", "{certs.ca}"], None, "--tls-cert"),
        (["--tls-cert", "/nope.pem", "--tls-key", "/nope.key"], None, "no such file"),
        (["--api-key-file", "{keys}"], "# only a comment\n", "holds no key"),
        (["--api-key-file", "{keys}"], "sha256:abc\n", "keys:1: sha256: must be"),
        (["--auth-health-reflection"], None, "needs API keys"),
    ],
)
def test_bad_security_settings_stop_the_start_with_a_reason(
    certs, tmp_path, capsys, flags: list[str], content: str | None, message: str
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(content or "")
    argv = [f.format(certs=certs, keys=keys) for f in flags]
    with pytest.raises(SystemExit):
        parse_settings(argv)
    assert message in capsys.readouterr().err


def test_the_server_flags_come_from_the_environment(certs, monkeypatch) -> None:
    monkeypatch.setenv("SERVEMESH_GATEWAY_TLS_CERT", str(certs.server_cert))
    monkeypatch.setenv("SERVEMESH_GATEWAY_TLS_KEY", str(certs.server_key))
    monkeypatch.setenv("SERVEMESH_GATEWAY_MAX_MESSAGE_BYTES", "4096")
    monkeypatch.setenv("SERVEMESH_GATEWAY_API_KEYS", "k1,k2")
    server = parse_settings([]).server
    assert (server.tls_cert, server.max_message_bytes) == (str(certs.server_cert), 4096)
    assert server.api_keys is not None and server.api_keys.accepts("k2")
    assert "k1" not in repr(server)  # only hashes are kept, and not shown


def openai_client(door: ServerProcess, certs: Certs, key: str) -> openai.OpenAI:
    """OpenAI's package on the gateway's HTTP door, which has the gRPC port's TLS and keys."""
    tls = ssl.create_default_context(cafile=str(certs.ca))
    return openai.OpenAI(
        base_url=f"https://127.0.0.1:{door.http_port}/v1",
        api_key=key,
        max_retries=0,
        http_client=httpx2.Client(verify=tls),
    )


@pytest.mark.parametrize("key", [FILE_KEY, HASHED_KEY, ENV_KEY])
def test_the_http_door_takes_the_same_keys_over_tls(keyed, certs, key: str) -> None:
    with openai_client(keyed, certs, key) as oai:
        answer = oai.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
        assert answer.usage.completion_tokens >= 1
        assert [m.id for m in oai.models.list()] == [MODEL]


def test_the_http_door_refuses_a_missing_or_wrong_key(keyed, certs) -> None:
    with (
        openai_client(keyed, certs, FILE_KEY + "x") as oai,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        oai.models.list()
    assert caught.value.code == "api_key_invalid"
    tls = ssl.create_default_context(cafile=str(certs.ca))
    with httpx2.Client(verify=tls) as http:
        response = http.post(
            f"https://127.0.0.1:{keyed.http_port}/v1/completions",
            json={"model": MODEL, "prompt": "Hi"},
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_missing"


def test_the_http_door_refuses_plaintext_when_tls_is_on(keyed) -> None:
    with httpx2.Client() as http, pytest.raises(httpx2.HTTPError):
        http.get(f"http://127.0.0.1:{keyed.http_port}/v1/models", timeout=5)
