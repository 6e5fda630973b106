"""One request inside the batching loop: its prompt still to prefill, its KV cache slot, its
sampler, and the text it has produced so far."""

from __future__ import annotations

import codecs
import enum
import time
from dataclasses import dataclass

from predictors.llama import metrics
from predictors.llama.sampling import SamplerChain
from runtime.stop_sequences import StopMatcher


class FinishReason(enum.Enum):
    EOS_TOKEN = "eos_token"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"


@dataclass(frozen=True)
class Delta:
    """New text, and how many generated tokens it accounts for."""

    text: str
    token_count: int


class Sequence:
    """A generation that owns sequence id `seq_id` in the shared context."""

    def __init__(
        self,
        job: object,
        seq_id: int,
        prompt: list[int],
        max_tokens: int,
        sampler: SamplerChain,
        stops: tuple[str, ...],
    ) -> None:
        self.job, self.seq_id, self.prompt = job, seq_id, prompt
        self.max_tokens, self.sampler = max_tokens, sampler
        self.n_past = 0  # tokens of this sequence in the KV cache
        self.generated: list[int] = []
        self.next_token: int | None = None  # sampled, to be decoded in the next batch
        self.completion = 0
        self.unsent = 0
        self.finish_reason: FinishReason | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)
        self.started = time.perf_counter()

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)

    def cached_tokens(self) -> list[int]:
        """The tokens whose KV cells this sequence has filled, in order."""
        return (self.prompt + self.generated)[: self.n_past]

    def accept(self, token: int, piece: bytes, is_eog: bool) -> Delta | None:
        """Takes a sampled token; returns text to send, if any. Sets finish_reason when done."""
        if self.completion == 0:
            metrics.TIME_TO_FIRST_TOKEN.observe(time.perf_counter() - self.started)
        if is_eog:
            self.finish_reason = FinishReason.EOS_TOKEN
            return self._flush()
        self.completion += 1
        self.unsent += 1
        self.next_token = token
        self.generated.append(token)
        metrics.GENERATED_TOKENS.inc()
        text, stopped = self._stops.feed(self._decoder.decode(piece))
        if stopped:
            self.finish_reason = FinishReason.STOP_SEQUENCE
            return self._delta(text, force=True)
        if self.completion >= self.max_tokens:
            self.finish_reason = FinishReason.LENGTH
            return self._flush(text)
        return self._delta(text)

    def _delta(self, text: str, force: bool = False) -> Delta | None:
        if not text and not force:
            return None
        delta, self.unsent = Delta(text, self.unsent), 0
        return delta

    def _flush(self, text: str = "") -> Delta | None:
        # Bytes still in the decoder are a character cut off by max_tokens: dropped, so the
        # text stays valid UTF-8 without a replacement character.
        text += self._stops.flush()  # held back for a stop sequence that never came
        return self._delta(text, force=self.unsent > 0)
