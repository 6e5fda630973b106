"""OpenAI response bodies and server-sent events from servemesh.v1 responses."""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

from servemesh.v1 import generation_pb2 as gen
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb

FINISH_REASONS = {
    gen.FINISH_REASON_EOS_TOKEN: "stop",
    gen.FINISH_REASON_STOP_SEQUENCE: "stop",
    gen.FINISH_REASON_LENGTH: "length",
}
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event; compact JSON, since a stream sends one per token."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def usage(u: gen.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


def model_object(info: model_pb2.ModelInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "model", "created": 0, "owned_by": info.backend}


class Completion:
    """The shape of one generation's answer: chat completion or text completion, unary or
    streamed. The id is the request id the gateway gave it, so logs and answers match."""

    def __init__(self, chat: bool, request_id: str, model: str) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.model = model
        self.created = int(time.time())

    def _head(self, streamed: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind + ".chunk" if streamed and self.chat else kind,
            "created": self.created,
            "model": self.model,
        }

    def _choice(self, text: str, finish_reason: str | None, streamed: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.chat and streamed:
            choice["delta"] = {"content": text} if text else {}
        elif self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = None
        choice["finish_reason"] = finish_reason
        return choice

    def whole(self, response: pb.PredictResponse) -> dict[str, Any]:
        out = response.text_generation
        body = self._head(streamed=False)
        body["choices"] = [self._choice(out.text, FINISH_REASONS.get(out.finish_reason), False)]
        body["usage"] = usage(out.usage)
        return body

    def first_chunk(self) -> bytes | None:
        """A chat stream opens with the assistant's role, as OpenAI's does."""
        if not self.chat:
            return None
        body = self._head(streamed=True)
        body["choices"] = [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ]
        return sse(body)

    def chunk(self, response: pb.PredictStreamResponse, include_usage: bool) -> bytes:
        body = self._head(streamed=True)
        finish = FINISH_REASONS.get(response.finish_reason)
        body["choices"] = [self._choice(response.text_delta.text, finish, True)]
        if include_usage:
            body["usage"] = None  # OpenAI's chunks carry null usage until the last
        return sse(body)

    def usage_chunk(self, u: gen.Usage) -> bytes:
        """The last chunk of a stream with stream_options.include_usage: no choices."""
        body = self._head(streamed=True)
        body["choices"] = []
        body["usage"] = usage(u)
        return sse(body)


def embedding_list(model: str, vectors: list[list[float]], base64_encoded: bool) -> dict[str, Any]:
    """The answer of /v1/embeddings. base64 is little-endian float32, as OpenAI sends it.
    The embedder does not report token counts, so usage says 0 rather than guessing."""
    data = []
    for i, vector in enumerate(vectors):
        value: Any = vector
        if base64_encoded:
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
