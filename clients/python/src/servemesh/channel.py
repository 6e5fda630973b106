"""What both clients share: their base class, which opens the channel, and its settings
(retry policy, message sizes, default deadline, TLS credentials and the API key)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, ClassVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 4
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Calls that are safe to repeat when the server was unavailable. A stream is left out: once
# a token has reached the caller, a silent retry would duplicate it.
_RETRYABLE_METHODS = [
    {"service": "servemesh.v1.PredictionService", "method": "Predict"},
    {"service": "servemesh.v1.PredictionService", "method": "ListModels"},
    {"service": "servemesh.v1.PredictionService", "method": "GetModel"},
    {"service": "grpc.health.v1.Health", "method": "Check"},
]


def retry_service_config(max_attempts: int) -> dict[str, Any]:
    """gRPC's own retry policy: exponential backoff on UNAVAILABLE, within the deadline."""
    return {
        "methodConfig": [
            {
                "name": _RETRYABLE_METHODS,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def channel_options(
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    tls_server_name: str | None = None,
) -> list[tuple[str, Any]]:
    """Options for a client channel; max_attempts 1 turns retries off. `tls_server_name` is
    the name to expect in the server's certificate when it is not the target's host."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    if max_attempts > 1:
        options += [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(retry_service_config(max_attempts))),
        ]
    else:
        options.append(("grpc.enable_retries", 0))
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return options


def read_pem(path: str, what: str) -> bytes:
    """The bytes of a PEM file; ValueError naming the setting when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {path!r}: {error.strerror}") from None


def channel_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS for a client channel: the CA that signed the server's certificate (None: the
    system's CAs), and a client certificate and key for servers that require one (mTLS)."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs its key and a key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca_file, "TLS CA file") if ca_file else None,
        private_key=read_pem(key_file, "TLS client key file") if key_file else None,
        certificate_chain=read_pem(cert_file, "TLS client certificate file") if cert_file else None,
    )


def client_credentials(
    credentials: grpc.ChannelCredentials | None,
    tls: bool,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> grpc.ChannelCredentials | None:
    """The credentials a client's channel uses, or None for plaintext. Naming any TLS file
    turns TLS on; `tls=True` alone trusts the system's CAs."""
    files = tls_ca or tls_cert or tls_key
    if credentials is not None:
        if tls or files:
            raise ValueError("give credentials= or the tls_* settings, not both")
        return credentials
    if tls or files:
        return channel_credentials(tls_ca, tls_cert, tls_key)
    return None


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata that carries an API key: `authorization: Bearer KEY`, or none."""
    if api_key is None:
        return ()
    key = api_key.strip()
    # gRPC refuses metadata values outside printable ASCII; saying so here names the cause.
    if not key or not key.isascii() or not key.isprintable() or " " in key:
        raise ValueError("api_key must be one word of printable ASCII characters")
    return (("authorization", f"Bearer {key}"),)


class _Default:
    """Marks 'use the client's default deadline', since None means 'no deadline'."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()
Timeout = float | None | _Default


class ClientBase:
    """The channel, stubs, default deadline and key of a client. `Client` and `AsyncClient`
    differ only in the gRPC API their channel comes from (`_grpc`: grpc or grpc.aio)."""

    _grpc: ClassVar[ModuleType]

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`api_key` goes with every call as `authorization: Bearer KEY`. TLS is on when
        `tls` is true or a TLS file is named: `tls_ca` is the CA that signed the server's
        certificate (default: the system's), `tls_cert` and `tls_key` a client certificate
        for servers that require one (mTLS). `credentials` are ready-made channel
        credentials instead."""
        self._metadata = auth_metadata(api_key)
        options = channel_options(max_attempts, max_message_bytes, tls_server_name)
        secure = client_credentials(credentials, tls, tls_ca, tls_cert, tls_key)
        self._channel = (
            self._grpc.secure_channel(target, secure, options)
            if secure
            else self._grpc.insecure_channel(target, options)
        )
        self._stub = pb_grpc.PredictionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout

    def _call_options(self, timeout: Timeout) -> dict[str, Any]:
        """The deadline (the client's default unless given; None for none) and key of a call."""
        seconds = self._timeout if isinstance(timeout, _Default) else timeout
        return {"timeout": seconds, "metadata": self._metadata}
