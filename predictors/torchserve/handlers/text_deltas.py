"""Token ids to text deltas for the text-generation handler, stop sequences included.

A module of its own: TorchServe wants exactly one class in a handler module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from stop_sequences import StopMatcher
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


class TextDeltas(BaseStreamer, StoppingCriteria):
    """Turns generated token ids into whole-character text deltas, holds back what could be
    the start of a stop sequence, and stops generation when one is complete."""

    def __init__(self, tokenizer: Any, stops: list[str], send: Callable[[str, int], None]) -> None:
        self.tokenizer, self.send = tokenizer, send
        self.matcher = StopMatcher(stops)
        self.ids: list[int] = []
        self.decoded = ""
        self.unsent_tokens = 0
        self.text: list[str] = []
        self.stopped = False
        self.prompt_seen = False
        self.eos_ids = {tokenizer.eos_token_id}

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if token in self.eos_ids or self.stopped:
                continue
            self.ids.append(token)
            self.unsent_tokens += 1
            decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if decoded.endswith("\ufffd"):  # a character split across tokens: wait
                continue
            piece, self.decoded = decoded[len(self.decoded) :], decoded
            safe, self.stopped = self.matcher.feed(piece)
            self._emit(safe)

    def _emit(self, text: str) -> None:
        if text or self.stopped:
            self.text.append(text)
            self.send(text, self.unsent_tokens)
            self.unsent_tokens = 0

    def end(self) -> None:
        if not self.stopped:
            self.text.append(tail := self.matcher.flush())
            if tail:
                self.send(tail, self.unsent_tokens)
                self.unsent_tokens = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool)
