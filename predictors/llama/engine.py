"""Runs llama.cpp generations on one worker thread and streams their tokens to asyncio.

llama-cpp-python's Llama object is not thread-safe, so one thread owns it and runs one
generation at a time, in arrival order; the event loop never waits on llama.cpp.
"""

from __future__ import annotations

import asyncio
import codecs
import enum
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import llama_cpp

from predictors.llama import metrics
from predictors.llama.chat import ChatTemplate
from predictors.llama.settings import LlamaSettings
from runtime.stop_sequences import StopMatcher
from runtime.textgen import Sampling
from servemesh.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)


class FinishReason(enum.Enum):
    EOS_TOKEN = "eos_token"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"


@dataclass(frozen=True)
class Generation:
    """One generation to run: the prompt as tokens, and how to continue it."""

    prompt_tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...] = ()


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


@dataclass
class _Job:
    generation: Generation
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()


class LlamaEngine:
    """Owns one llama.cpp model; `generate` streams events for one generation."""

    def __init__(self, settings: LlamaSettings) -> None:
        self.settings = settings
        self._llm: llama_cpp.Llama | None = None
        self._eog: frozenset[int] = frozenset()
        self.chat: ChatTemplate | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0
        self._thread = threading.Thread(target=self._work, name="llama-worker", daemon=True)

    @property
    def ready(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        """Loads the model (blocking: call it from a thread) and starts the worker."""
        s = self.settings
        started = time.perf_counter()
        llm = llama_cpp.Llama(
            s.model_path, n_ctx=s.n_ctx, n_threads=s.n_threads, n_batch=s.n_batch, verbose=False
        )
        vocab = llm._model.vocab
        self._eog = frozenset(
            t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)
        )
        text = llm._model.token_get_text
        self.chat = ChatTemplate(llm.metadata, text(llm.token_bos()), text(llm.token_eos()))
        self._llm = llm
        self._thread.start()
        log.info("loaded %s in %.1f s", s.model_path, time.perf_counter() - started)

    def tokenize(self, text: str) -> list[int]:
        """The prompt's tokens, special tokens parsed. Reads only the vocabulary, so it is
        safe beside a running generation."""
        assert self._llm is not None, "load() first"
        return self._llm.tokenize(text.encode(), add_bos=True, special=True)

    async def generate(self, generation: Generation) -> AsyncIterator[Event]:
        """Streams Delta events and one Finished; closing the iterator stops the generation
        before its next token."""
        if self._llm is None:
            raise Unavailable("the model is still loading; retry in a few seconds")
        if self._waiting >= self.settings.max_queued_requests:
            raise ResourceExhausted(
                f"{self._waiting} requests are already waiting for the model, the most this "
                f"predictor queues (max_queued_requests={self.settings.max_queued_requests}); "
                "retry later",
                reason="QUEUE_FULL",
            )
        job = _Job(generation, asyncio.get_running_loop())
        self._waiting += 1
        metrics.QUEUED_REQUESTS.inc()
        self._jobs.put(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()

    def close(self) -> None:
        """Stops the worker after the generation it runs now."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.loop.call_soon_threadsafe(self._dequeued)
            metrics.QUEUED_REQUESTS.dec()
            if job.cancelled.is_set():
                metrics.FINISHED.labels("cancelled").inc()
                continue
            metrics.ACTIVE_SEQUENCES.inc()
            try:
                self._run(job)
            except Exception as error:  # reported to the caller as INTERNAL
                log.exception("generation failed")
                metrics.FINISHED.labels("error").inc()
                job.emit(error)
            finally:
                metrics.ACTIVE_SEQUENCES.dec()

    def _dequeued(self) -> None:
        self._waiting -= 1

    def _run(self, job: _Job) -> None:
        llm, gen, s = self._llm, job.generation, job.generation.sampling
        assert llm is not None
        llm.set_seed(s.seed if s.seed is not None else random.getrandbits(32))
        # Re-using a cached prompt prefix evaluates the rest in a smaller batch, and llama.cpp's
        # results depend on the batch shape: greedy output would then depend on the previous
        # request. A full prefill keeps each request's output its own.
        llm.reset()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(gen.stop)
        started = time.perf_counter()
        metrics.PROMPT_TOKENS.inc(len(gen.prompt_tokens))
        completion, unsent, reason = 0, 0, FinishReason.LENGTH
        tokens = llm.generate(
            gen.prompt_tokens,
            temp=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=0.0,
            repeat_penalty=s.repeat_penalty,
            reset=True,
        )
        for token in tokens:
            if job.cancelled.is_set():
                metrics.FINISHED.labels("cancelled").inc()
                return
            if completion == 0:
                metrics.TIME_TO_FIRST_TOKEN.observe(time.perf_counter() - started)
            if token in self._eog:
                reason = FinishReason.EOS_TOKEN
                break
            completion += 1
            unsent += 1
            metrics.GENERATED_TOKENS.inc()
            text, stopped = stops.feed(decoder.decode(llm.detokenize([token])))
            if stopped:
                reason = FinishReason.STOP_SEQUENCE
                job.emit(Delta(text, unsent))
                unsent = 0
                break
            if text:
                job.emit(Delta(text, unsent))
                unsent = 0
            if completion >= gen.max_tokens:
                break
        tokens.close()
        if reason is not FinishReason.STOP_SEQUENCE:
            # Bytes still in the decoder are a character cut off by max_tokens: dropped,
            # so the text stays valid UTF-8 without a replacement character.
            tail = stops.flush()  # held back for a stop sequence that never came
            if tail or unsent:
                job.emit(Delta(tail, unsent))
        metrics.FINISHED.labels(reason.value).inc()
        job.emit(Finished(reason, len(gen.prompt_tokens), completion))
