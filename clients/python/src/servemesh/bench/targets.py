"""What a benchmark talks to: a servemesh gateway or predictor over gRPC, or an
OpenAI-compatible completions endpoint over HTTP (the baselines)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from servemesh.aio import AsyncClient
from servemesh.bench.workload import BenchRequest


class Target(Protocol):
    name: str

    def stream(self, request: BenchRequest) -> AsyncIterator[int]:
        """Yields the number of new tokens each time some arrive."""
        ...

    async def close(self) -> None: ...


class ServemeshTarget:
    """servemesh.v1 PredictStream, greedy, through the SDK; `parameters` are more generation
    parameters for every request (draft_tokens=8); `client_options` are AsyncClient's
    (api_key, tls_ca, tls_cert, tls_key, ...)."""

    def __init__(
        self,
        address: str,
        model: str,
        name: str = "",
        parameters: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        self.name = name or f"servemesh {address}"
        self.model = model
        self.parameters = parameters or {}
        self._client = AsyncClient(address, timeout=None, max_attempts=1, **client_options)

    async def stream(self, request: BenchRequest) -> AsyncIterator[int]:
        async for chunk in self._client.predict_stream(
            self.model,
            prompt=request.prompt,
            max_tokens=request.max_tokens,
            temperature=0,
            **self.parameters,
        ):
            if chunk.token_count:
                yield chunk.token_count

    async def close(self) -> None:
        await self._client.close()


class OpenAITarget:
    """POST /v1/completions with stream=true; a chunk carries one token (its text may be
    empty, for a token that ends inside a character), except the last, which carries the
    finish reason and, from some servers, the usage."""

    def __init__(self, base_url: str, model: str, name: str = "") -> None:
        import httpx  # the bench extra: only the benchmark needs an HTTP client

        self.name = name or f"openai {base_url}"
        self.model = model
        self._http = httpx.AsyncClient(base_url=base_url, timeout=None)

    async def stream(self, request: BenchRequest) -> AsyncIterator[int]:
        body = {
            "model": self.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": 0,
            "stream": True,
        }
        counted = 0
        async with self._http.stream("POST", "/v1/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                new = new_tokens(json.loads(line[6:]), counted)
                if new:
                    counted += new
                    yield new

    async def close(self) -> None:
        await self._http.aclose()


def new_tokens(chunk: dict[str, Any], counted: int) -> int:
    """How many tokens a streamed completions chunk adds to the `counted` so far. The last
    chunk (with a finish reason) adds a token only where the server's usage says one is
    still missing, or, without usage, where it carries text: counting it as one more token
    credited llama-server with 129 tokens for 128."""
    choices = chunk.get("choices") or []
    if choices and choices[0].get("finish_reason") is None:
        return 1
    usage = chunk.get("usage") or {}
    if "completion_tokens" in usage:
        return max(int(usage["completion_tokens"]) - counted, 0)
    return 1 if choices and choices[0].get("text") else 0


def make_target(url: str, model: str, name: str = "", **client_options: Any) -> Target:
    """grpc://HOST:PORT for servemesh, http(s)://HOST:PORT for an OpenAI-compatible server.
    `client_options` (API key, TLS) go to servemesh targets only."""
    if url.startswith("grpc://"):
        return ServemeshTarget(url.removeprefix("grpc://"), model, name, **client_options)
    if url.startswith(("http://", "https://")):
        return OpenAITarget(url, model, name)
    raise ValueError(f"target {url!r}: use grpc://HOST:PORT or http://HOST:PORT")
