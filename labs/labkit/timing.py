"""One generation timed two ways: unary (the whole answer at once) and streamed (token by token)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from servemesh import Client


@dataclass(frozen=True)
class Timed:
    """When a caller saw the first text and the whole answer, in seconds from the call."""

    first_text_s: float
    whole_s: float
    text: str
    tokens: int
    arrivals_s: tuple[float, ...] = field(default=())  # when each streamed chunk arrived


def unary(client: Client, model: str, message: str, **options: object) -> Timed:
    """A unary Predict: nothing is shown until the answer is complete."""
    started = time.perf_counter()
    prediction = client.predict(model, message, **options)  # type: ignore[arg-type]
    whole = time.perf_counter() - started
    tokens = prediction.usage.completion_tokens if prediction.usage else 0
    return Timed(whole, whole, prediction.text, tokens)


def streamed(client: Client, model: str, message: str, **options: object) -> Timed:
    """A PredictStream: text is shown as each chunk arrives."""
    started = time.perf_counter()
    arrivals, parts, tokens = [], [], 0
    for chunk in client.predict_stream(model, message, **options):  # type: ignore[arg-type]
        if chunk.text:
            arrivals.append(time.perf_counter() - started)
            parts.append(chunk.text)
        tokens += chunk.token_count
    whole = time.perf_counter() - started
    return Timed(arrivals[0] if arrivals else whole, whole, "".join(parts), tokens, tuple(arrivals))
