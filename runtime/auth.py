"""API keys: `authorization: Bearer KEY` metadata checked against SHA-256 hashes of the keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from servemesh.errors import Unauthenticated

log = logging.getLogger(__name__)
HASH_PREFIX = "sha256:"
# Services a load balancer or grpcurl reaches before it has a key. grpcurl asks for
# reflection v1 first and falls back to v1alpha on UNIMPLEMENTED, so both stay open.
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse_entry(entry: str, where: str) -> bytes:
    """The SHA-256 digest that one key entry stands for: a key, or `sha256:HEX` of one."""
    if not entry.startswith(HASH_PREFIX):
        return _digest(entry)
    hex_digest = entry.removeprefix(HASH_PREFIX)
    try:
        digest = bytes.fromhex(hex_digest)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError(
            f"{where}: {HASH_PREFIX} must be followed by 64 hex digits, the SHA-256 of the key "
            "(printf %s KEY | sha256sum)"
        )
    return digest


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys, as SHA-256 digests only: the plaintext keys are never kept."""

    digests: tuple[bytes, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.digests)

    def accepts(self, key: str) -> bool:
        """Whether `key` is one of the keys, in time that does not depend on which key
        matched or on how much of it did: every digest is compared, with no early exit."""
        candidate = _digest(key)
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched

    @classmethod
    def load(cls, file: str | None = None, env_value: str | None = None) -> ApiKeys | None:
        """Keys from a file (one a line; blank lines and `#` comments skipped) and from a
        comma-separated environment value; None when neither names any key."""
        digests: list[bytes] = []
        if file:
            try:
                with open(file, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except OSError as error:
                raise ValueError(
                    f"cannot read the API key file {file!r}: {error.strerror}"
                ) from None
            for number, line in enumerate(lines, 1):
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    digests.append(_parse_entry(entry, f"{file}:{number}"))
            if not digests:
                # An empty file that turned auth off would fail open; refuse to start instead.
                raise ValueError(f"the API key file {file!r} holds no key")
        for entry in (env_value or "").split(","):
            if entry.strip():
                digests.append(_parse_entry(entry.strip(), "API keys environment variable"))
        return cls(tuple(digests)) if digests else None


def bearer_key(authorization: str | bytes | None) -> str | None:
    """The key of an `authorization: Bearer KEY` value (gRPC metadata or HTTP header)."""
    if authorization is None:
        return None
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, key = text.strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def _authorization(metadata: Sequence[tuple[str, Any]] | None) -> str | bytes | None:
    """The first `authorization` metadata value, if any."""
    for name, value in metadata or ():
        if name == "authorization":
            return value
    return None


_MISSING = Unauthenticated(
    "this server needs an API key: send 'authorization: Bearer KEY' "
    "(SDK: api_key=...; CLI: --api-key or SERVEMESH_API_KEY; OpenAI clients: api_key=...)",
    reason="API_KEY_MISSING",
)
_INVALID = Unauthenticated(
    "the API key was not accepted: check it for typos, or ask the server's operator for a "
    "current key",
    reason="API_KEY_INVALID",
)


def key_refusal(keys: ApiKeys, authorization: str | bytes | None) -> Unauthenticated | None:
    """Why a call with this `authorization` value is refused, or None when its key is
    accepted: the one check of every door (gRPC metadata, HTTP header)."""
    key = bearer_key(authorization)
    if key is None:
        return _MISSING
    return None if keys.accepts(key) else _INVALID


def _refusal(error: Unauthenticated, method: str) -> grpc.RpcMethodHandler:
    status = error.to_status()

    async def refuse(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        log.info("refused %s from %s: %s", method, context.peer(), error.reason)
        await context.abort(status.code, status.details, status.trailing_metadata)

    # The call ends before its request is read, and on the wire a status with no messages is
    # the same for all four kinds of method, so one stream-stream handler (which asks nothing
    # of the request) refuses them all, unknown methods included.
    return grpc.stream_stream_rpc_method_handler(refuse)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with an accepted API key; `open_services` need none."""

    def __init__(self, keys: ApiKeys, open_services: Iterable[str] = OPEN_SERVICES) -> None:
        self._keys = keys
        self._open_prefixes = tuple(f"/{service}/" for service in open_services)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method.startswith(self._open_prefixes):
            return await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        refusal = key_refusal(self._keys, _authorization(metadata))
        if refusal is not None:
            return _refusal(refusal, method)
        return await continuation(handler_call_details)
