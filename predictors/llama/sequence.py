"""One request inside the batching loop: its prompt still to prefill, its KV cache slot, its
sampler, and the text it has produced so far."""

from __future__ import annotations

import codecs
import enum
import threading
import time
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from predictors.llama.prompt_lookup import PromptLookup
from runtime.stop_sequences import StopMatcher
from runtime.textgen import Sampling


class FinishReason(enum.Enum):
    EOS_TOKEN = "eos_token"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"


@dataclass(frozen=True)
class Generation:
    """One generation to run: the prompt as tokens, and how to continue it; `grammar` (GBNF)
    restricts the output to what it allows; `draft_tokens` is the most prompt-lookup draft
    tokens a step may verify for it (0: no speculative decoding)."""

    prompt_tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    draft_tokens: int = 0


@dataclass(frozen=True)
class Delta:
    """New text, and how many generated tokens it accounts for."""

    text: str
    token_count: int


@dataclass(frozen=True)
class Finished:
    """The last event of a generation."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


Event = Delta | Finished


class Job(Protocol):
    """What the batching loop reads of a submitted request: its generation, and whether its
    caller has gone (set from the event loop, read by the worker thread)."""

    @property
    def generation(self) -> Generation: ...

    @property
    def cancelled(self) -> threading.Event: ...


class Sampler(Protocol):
    """Picks a sequence's next token; in the engine, a llama.cpp sampler chain."""

    def sample(self, ctx: Any, batch_index: int) -> int: ...

    def free(self) -> None: ...


J = TypeVar("J", bound=Job)


class Sequence(Generic[J]):
    """A generation that owns sequence id `seq_id` in the shared context. Generic over the job
    type, so the engine gets its own job class back and tests can use a plain one."""

    def __init__(
        self,
        job: J,
        seq_id: int,
        prompt: list[int],
        max_tokens: int,
        sampler: Sampler,
        stops: tuple[str, ...],
        draft_tokens: int = 0,
    ) -> None:
        self.job, self.seq_id, self.prompt = job, seq_id, prompt
        self.max_tokens, self.sampler = max_tokens, sampler
        self.draft_tokens = draft_tokens
        self._lookup = PromptLookup(prompt) if draft_tokens > 0 else None
        self.drafts: list[int] = []  # guessed tokens decoded after next_token in this step
        # How many to guess next: every draft token costs a row of the decode, accepted or
        # not, so after a miss the next draft is one longer than what was accepted, and
        # after a full hit twice as long, up to draft_tokens.
        self._draft_length = draft_tokens
        self.n_past = 0  # tokens of this sequence in the KV cache (or in this step's plan)
        self.reused = 0  # prompt tokens whose KV cells were kept from the slot's last request
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

    def propose(self, budget: int) -> list[int]:
        """Draft tokens to verify after next_token this step: at most its own limit, the
        step's `budget`, and one fewer than the tokens it may still generate (the step yields
        up to one token more than it verifies)."""
        if self._lookup is None:
            return []
        room = self.max_tokens - self.completion - 1
        return self._lookup.draft(min(self._draft_length, budget, room))

    def verified(self, kept: int) -> None:
        """The model agreed with the first `kept` of this step's drafts."""
        if kept == len(self.drafts):
            self._draft_length = min(2 * self._draft_length, self.draft_tokens)
        else:
            self._draft_length = kept + 1
        self.drafts = []

    def accept(self, token: int, piece: bytes, is_eog: bool) -> Delta | None:
        """Takes a sampled token; returns text to send, if any. Sets finish_reason when done."""
        if is_eog:
            self.finish_reason = FinishReason.EOS_TOKEN
            return self._flush()
        self.completion += 1
        self.unsent += 1
        self.next_token = token
        self.generated.append(token)
        if self._lookup is not None:
            self._lookup.append(token)
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
