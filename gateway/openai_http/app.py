"""The OpenAI-compatible HTTP API as a Starlette application on the gateway's dispatcher.

Every call takes the same path as a servemesh.v1 call: the same router, request limits,
admission, API keys, deadlines and metrics (protocol="openai"). A caller that disconnects
cancels what it started: a stream's generator is closed by Starlette when the connection
drops, and a unary call races its work against the disconnect."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.dispatch import Dispatcher
from gateway.openai_http import requests, responses
from gateway.openai_http.errors import HttpError, from_error, invalid
from runtime.auth import ApiKeys, key_refusal
from runtime.incoming import Incoming, from_headers
from servemesh.metadata import REQUEST_ID_KEY
from servemesh.v1 import prediction_service_pb2 as pb

T = TypeVar("T")
# What an endpoint answers with: the body as JSON, the deadline, and the call's own ids.
Answer = Callable[[Any, float | None, Incoming], Awaitable[Response]]
# Deadlines over HTTP. X-Servemesh-Timeout (seconds) sets one for any request from any client.
# OpenAI's Python SDK sends its read timeout as X-Stainless-Read-Timeout: a unary answer
# sends no byte until it is ready, so that client gives up after it, and it is the call's
# deadline; a stream's chunks reset it, so it says nothing of the stream's length. The
# smallest deadline that applies holds.
DEADLINE_HEADER = "x-servemesh-timeout"
UNARY_DEADLINE_HEADER = "x-stainless-read-timeout"
PROTOCOL = "openai"


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP request may weigh and hold. `max_body_bytes` is the gateway's
    limits.max_request_bytes, so both doors refuse the same size."""

    max_body_bytes: int
    max_embedding_inputs: int = 256


class _CallerGone(Exception):
    """The client disconnected before its answer was ready."""


class OpenAIApi:
    def __init__(
        self, dispatcher: Dispatcher, limits: HttpLimits, api_keys: ApiKeys | None = None
    ) -> None:
        self._dispatch = dispatcher
        self._limits = limits
        self._keys = api_keys
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/models/{model:path}", self._model, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ],
            exception_handlers={
                404: self._no_route,
                405: self._no_route,
            },
        )

    # -- what every endpoint does first --------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        if self._keys is None:
            return
        refusal = key_refusal(self._keys, request.headers.get("authorization"))
        if refusal is not None:
            raise from_error(refusal)

    async def _json(self, request: Request) -> Any:
        """The body as JSON, refused from its length before more than the limit is read."""
        limit = self._limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        body, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            body.append(chunk)
        try:
            return json.loads(b"".join(body))
        except (ValueError, UnicodeDecodeError) as error:
            raise invalid(f"the body is not valid JSON: {error}", code="invalid_json") from None

    @staticmethod
    def _timeout(request: Request, streamed: bool = False) -> float | None:
        timeouts = []
        names = (DEADLINE_HEADER,) if streamed else (DEADLINE_HEADER, UNARY_DEADLINE_HEADER)
        for name in names:
            value = request.headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds <= 0:
                raise invalid(f"header {name} must be a positive number of seconds", name)
            timeouts.append(seconds)
        return min(timeouts, default=None)

    async def _until_disconnect(self, request: Request, work: Awaitable[T]) -> T:
        """`work`'s result; cancels it when the caller disconnects first."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise _CallerGone
        return task.result()

    async def _handle(self, request: Request, answer: Answer) -> Response:
        """`answer`'s response, or the OpenAI error for its failure; either way with the
        call's request id in the x-request-id header."""
        incoming = from_headers(request.headers)
        return _with_id(await self._answer(request, answer, incoming), incoming)

    async def _answer(self, request: Request, answer: Answer, incoming: Incoming) -> Response:
        timeout = None
        try:
            self._authenticate(request)
            body = await self._json(request)
            streamed = isinstance(body, dict) and body.get("stream") is True
            timeout = self._timeout(request, streamed)
            async with asyncio.timeout(timeout):
                return await self._until_disconnect(request, answer(body, timeout, incoming))
        except _CallerGone:
            return Response(status_code=499)  # nobody reads it; the access log does
        except TimeoutError:
            return _error(HttpError(504, _deadline_message(timeout), "deadline_exceeded"))
        except Exception as error:  # every failure becomes an OpenAI error
            return _error(from_error(error))

    # -- endpoints -------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        incoming = from_headers(request.headers)
        try:
            self._authenticate(request)
            infos = await self._dispatch.list_models(self._timeout(request))
        except Exception as error:
            return _with_id(_error(from_error(error)), incoming)
        listing = {"object": "list", "data": [responses.model_object(i) for i in infos]}
        return _with_id(JSONResponse(listing), incoming)

    async def _model(self, request: Request) -> Response:
        incoming = from_headers(request.headers)
        try:
            self._authenticate(request)
            name = request.path_params["model"]
            info = await self._dispatch.get_model(name, self._timeout(request))
        except Exception as error:
            return _with_id(_error(from_error(error)), incoming)
        return _with_id(JSONResponse(responses.model_object(info)), incoming)

    async def _chat(self, request: Request) -> Response:
        async def answer(body: Any, timeout: float | None, incoming: Incoming) -> Response:
            return await self._generate(requests.chat_request(body), True, timeout, incoming)

        return await self._handle(request, answer)

    async def _completions(self, request: Request) -> Response:
        async def answer(body: Any, timeout: float | None, incoming: Incoming) -> Response:
            generation = requests.completion_request(body)
            return await self._generate(generation, False, timeout, incoming)

        return await self._handle(request, answer)

    async def _generate(
        self,
        generation: requests.Generation,
        chat: bool,
        timeout: float | None,
        incoming: Incoming,
    ) -> Response:
        method = "chat.completions" if chat else "completions"
        request = generation.request
        model = request.model
        if not generation.stream:
            unary = pb.PredictRequest.FromString(request.SerializeToString())
            response = await self._dispatch.predict(unary, timeout, PROTOCOL, method, incoming)
            return JSONResponse(
                responses.Completion(chat, response.request_id, model).whole(response)
            )
        stream = self._dispatch.predict_stream(request, timeout, PROTOCOL, method, incoming)
        try:
            # The first answer decides the HTTP status: a request refused by the router, a
            # limit, admission or the model is an HTTP error, not a 200 with an error event.
            first = await anext(stream)
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        completion = responses.Completion(chat, request.request_id, model)
        return StreamingResponse(
            _events(completion, first, stream, generation.include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _embeddings(self, request: Request) -> Response:
        async def answer(body: Any, timeout: float | None, incoming: Incoming) -> Response:
            asked = requests.embeddings_request(body, self._limits.max_embedding_inputs)
            calls = [requests.embedding_call(asked.model, text) for text in asked.texts]
            answers = await asyncio.gather(  # one request id for all of its texts
                *(
                    self._dispatch.predict(c, timeout, PROTOCOL, "embeddings", incoming)
                    for c in calls
                )
            )
            vectors = [_vector(a) for a in answers]
            return JSONResponse(responses.embedding_list(asked.model, vectors, asked.base64))

        return await self._handle(request, answer)

    async def _no_route(self, request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 404)
        message = (
            f"{request.method} {request.url.path} is not an endpoint of this server; it serves "
            "GET /v1/models, POST /v1/chat/completions, /v1/completions and /v1/embeddings"
        )
        return _with_id(
            _error(HttpError(status, message, "unknown_endpoint")), from_headers(request.headers)
        )


async def _events(
    completion: responses.Completion,
    first: pb.PredictStreamResponse,
    stream: AsyncIterator[pb.PredictStreamResponse],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The stream's events: the role, one chunk per delta, usage when asked, [DONE]. An error
    after the first chunk is an error event, so the stream never ends without saying why."""
    usage = None
    try:
        opening = completion.first_chunk()
        if opening:
            yield opening
        response: pb.PredictStreamResponse | None = first
        while response is not None:
            if response.HasField("usage"):
                usage = response.usage
            yield completion.chunk(response, include_usage)
            response = await anext(stream, None)
        if include_usage and usage is not None:
            yield completion.usage_chunk(usage)
        yield responses.DONE
    except Exception as error:  # said to the client, who can act on it
        yield responses.sse(from_error(error).body())
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _vector(response: pb.PredictResponse) -> list[float]:
    outputs = response.inference.outputs
    value = outputs.get("embedding")
    if value is None or value.WhichOneof("kind") != "vector":
        names = ", ".join(sorted(outputs)) or "none"
        raise invalid(
            f"model {response.model!r} is not an embedding model: it answered with outputs "
            f"({names}), not an 'embedding' vector",
            "model",
            code="not_an_embedding_model",
        )
    return list(value.vector.values)


def _too_large(size: int, limit: int) -> HttpError:
    return HttpError(
        413,
        f"the request body is {size} bytes; at most {limit} (limits.max_request_bytes)",
        "request_too_large",
    )


def _deadline_message(timeout: float | None) -> str:
    return f"the request's deadline of {timeout} s passed before the answer was ready"


def _error(error: HttpError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _with_id(response: Response, incoming: Incoming) -> Response:
    response.headers[REQUEST_ID_KEY] = incoming.request_id
    return response
