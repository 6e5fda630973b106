"""OpenAI request bodies, checked and translated into servemesh.v1 requests. Each refusal
names the field (`param`) and says what would be accepted. Fields that change what OpenAI's
API would generate but that servemesh cannot honour (n > 1, logprobs, tools, penalties) are
refused, not ignored: an answer that silently ignored them would be a different answer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.openai_http.errors import invalid
from servemesh.errors import InvalidArgument
from servemesh.requests import response_format_message
from servemesh.v1 import generation_pb2 as gen
from servemesh.v1 import inference_pb2 as inf
from servemesh.v1 import prediction_service_pb2 as pb

ROLES = {
    "system": gen.CHAT_ROLE_SYSTEM,
    "developer": gen.CHAT_ROLE_SYSTEM,  # OpenAI's newer name for system instructions
    "user": gen.CHAT_ROLE_USER,
    "assistant": gen.CHAT_ROLE_ASSISTANT,
}
# OpenAI's default for /v1/completions; chat completions default to the model's own limit.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# Accepted and ignored: they do not change what is generated.
_IGNORED = frozenset({"user", "store", "metadata", "service_tier", "parallel_tool_calls"})
# Accepted only at the value that asks for nothing.
_NEUTRAL: dict[str, Any] = {
    "n": 1,
    "best_of": 1,
    "echo": False,
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "modalities": (None, ["text"]),
}


@dataclass(frozen=True)
class Generation:
    """A chat or completions request: the servemesh request and how to answer it."""

    request: pb.PredictStreamRequest
    stream: bool
    include_usage: bool


def _require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise invalid("the request body must be a JSON object", code="invalid_body")
    return body


def model_name(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: a model name from GET /v1/models", "model")
    return model


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"'{name}' must be a number", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' is {value}; it must be between {low} and {high}", name)
    return float(value)


def _integer(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' is {value}; it must be between {low} and {high}", name)
    return value


def _check_unsupported(body: Mapping[str, Any]) -> None:
    for name, neutral in _NEUTRAL.items():
        if name not in body:
            continue
        allowed = neutral if isinstance(neutral, tuple) else (neutral,)
        if body[name] not in allowed:
            raise invalid(
                f"'{name}' is not supported by this server; leave it out "
                f"(or set it to {allowed[0]!r})",
                name,
                code="unsupported_parameter",
            )


def _parameters(
    body: Mapping[str, Any], default_max_tokens: int | None
) -> gen.GenerationParameters:
    """The sampling parameters OpenAI's API and servemesh.v1 share, plus llama.cpp's top_k
    and repeat_penalty, which many OpenAI-compatible servers accept as extensions, and
    servemesh's own draft_tokens (speculative decoding)."""
    p = gen.GenerationParameters()
    max_tokens = _integer(body, "max_completion_tokens", 1, 2**31 - 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 2**31 - 1)
    if max_tokens is None:
        max_tokens = default_max_tokens
    if max_tokens is not None:
        p.max_tokens = max_tokens
    if (temperature := _number(body, "temperature", 0.0, 2.0)) is not None:
        p.temperature = temperature
    if (top_p := _number(body, "top_p", 0.0, 1.0)) is not None:
        p.top_p = top_p
    if (top_k := _integer(body, "top_k", 0, 2**31 - 1)) is not None:
        p.top_k = top_k
    if (penalty := _number(body, "repeat_penalty", 0.0, 10.0)) is not None:
        p.repeat_penalty = penalty
    if (seed := _integer(body, "seed", -(2**63), 2**64 - 1)) is not None:
        p.seed = seed % 2**64  # OpenAI's seeds may be negative; servemesh's are unsigned
    if (draft_tokens := _integer(body, "draft_tokens", 0, 2**32 - 1)) is not None:
        p.draft_tokens = draft_tokens  # servemesh's speculative decoding, as an extension
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise invalid("'stop' must be a string or a list of strings", "stop")
        p.stop.extend(stop)
    if body.get("response_format") is not None:
        # The SDK's own reading of OpenAI's form, so the two cannot accept different things;
        # the model's server then refuses what its grammar cannot enforce, naming it.
        try:
            p.response_format.CopyFrom(response_format_message(body["response_format"]))
        except InvalidArgument as error:
            raise invalid(error.message, "response_format") from None
    return p


def _stream_options(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise invalid("'stream_options' must be an object", "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise invalid("'stream_options.include_usage' must be true or false", "stream_options")
    return bool(stream), include_usage


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (OpenAI's multi-part form)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise invalid(
                    f"{where}: a content part of type {kind!r} is not supported; this "
                    "server's models take text parts only",
                    where,
                    code="unsupported_content",
                )
            if not isinstance(part.get("text"), str):
                raise invalid(f"{where}: a text part needs a string 'text'", where)
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"{where} must be a string or a list of text parts", where)


def chat_request(body: Any) -> Generation:
    """POST /v1/chat/completions as a servemesh text-generation request with a chat."""
    body = _require_object(body)
    _check_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list of {role, content}", "messages")
    chat = gen.ChatConversation()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise invalid(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise invalid(
                f"{where}.role is {role!r}; use one of {', '.join(sorted(ROLES))}",
                f"{where}.role",
            )
        content = _content(message.get("content"), f"{where}.content")
        chat.messages.add(role=ROLES[role], content=content)
    stream, include_usage = _stream_options(body)
    request = pb.PredictStreamRequest(model=model_name(body))
    request.text_generation.chat.CopyFrom(chat)
    request.text_generation.parameters.CopyFrom(_parameters(body, None))
    return Generation(request, stream, include_usage)


def completion_request(body: Any) -> Generation:
    """POST /v1/completions as a servemesh text-generation request with a raw prompt."""
    body = _require_object(body)
    _check_unsupported(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid(
            "'prompt' must be a string (or a list of one string); token arrays and several "
            "prompts in one request are not supported",
            "prompt",
        )
    stream, include_usage = _stream_options(body)
    request = pb.PredictStreamRequest(model=model_name(body))
    request.text_generation.prompt = prompt
    request.text_generation.parameters.CopyFrom(_parameters(body, COMPLETIONS_DEFAULT_MAX_TOKENS))
    return Generation(request, stream, include_usage)


@dataclass(frozen=True)
class Embeddings:
    model: str
    texts: list[str]
    base64: bool


def embeddings_request(body: Any, max_texts: int) -> Embeddings:
    """POST /v1/embeddings: one text or a list of them, each embedded by its own call."""
    body = _require_object(body)
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise invalid(
            "'input' must be a string or a non-empty list of strings; token arrays are not "
            "supported",
            "input",
        )
    if len(texts) > max_texts:
        raise invalid(
            f"'input' has {len(texts)} texts; at most {max_texts} (--http-max-embedding-inputs)",
            "input",
            code="too_many_inputs",
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    if body.get("dimensions") is not None:
        raise invalid(
            "'dimensions' is not supported: the model's vectors have a fixed width",
            "dimensions",
            code="unsupported_parameter",
        )
    return Embeddings(model_name(body), texts, encoding == "base64")


def embedding_call(model: str, text: str) -> pb.PredictRequest:
    """The servemesh request that embeds one text: the named input "text"."""
    return pb.PredictRequest(
        model=model, inference=inf.InferenceInput(inputs={"text": inf.InferenceValue(text=text)})
    )
