"""Continuous batching for llama.cpp: every step decodes one token of each running sequence,
plus a chunk of a waiting prompt, in one llama.cpp batch.

A new request joins between steps; its prompt is prefilled in chunks so running streams keep
flowing (chunked prefill). A finished, cancelled or timed-out request leaves at once and its
KV cache cells are freed. One worker thread owns llama.cpp; the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from llama_cpp import _internals

from predictors.llama import metrics
from predictors.llama.chat import ChatTemplate
from predictors.llama.model import LoadedModel
from predictors.llama.sampling import SamplerChain
from predictors.llama.sequence import Delta, FinishReason, Sequence
from predictors.llama.settings import LlamaSettings
from runtime.textgen import Sampling
from servemesh.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5
CLOSE_WAIT_S = 10.0


@dataclass(frozen=True)
class Generation:
    """One generation to run: the prompt as tokens, and how to continue it."""

    prompt_tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...] = ()


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
    # Filled on the event loop by _deliver; `ready` wakes the one reader.
    events: collections.deque[Event | BaseException] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def take(self) -> list[Event | BaseException]:
        """Everything delivered so far, with consecutive deltas merged into one: a reader that
        fell behind catches up in one message instead of one per token."""
        taken: list[Event | BaseException] = []
        while self.events:
            event = self.events.popleft()
            last = taken[-1] if taken else None
            if isinstance(event, Delta) and isinstance(last, Delta):
                taken[-1] = Delta(last.text + event.text, last.token_count + event.token_count)
            else:
                taken.append(event)
        self.ready.clear()
        return taken


def _deliver(items: list[tuple[_Job, Event | BaseException]]) -> None:
    """On the event loop: hands one step's events to their readers."""
    for job, event in items:
        job.events.append(event)
        job.ready.set()


class _Outbox:
    """Events of one step, sent to the event loop in one wake-up instead of one per token."""

    def __init__(self) -> None:
        self._items: list[tuple[_Job, Event | BaseException]] = []

    def put(self, job: _Job, event: Event | BaseException) -> None:
        self._items.append((job, event))

    def send(self) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Event | BaseException]]] = {}
        for job, event in self._items:
            by_loop.setdefault(job.loop, []).append((job, event))
        self._items = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for job, _ in items:
                    job.cancelled.set()


class LlamaEngine:
    """Owns one llama.cpp model; `generate` streams events for one generation."""

    def __init__(self, settings: LlamaSettings) -> None:
        self.settings = settings
        self._model: LoadedModel | None = None
        self._inbox: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0  # submitted, not yet running; only touched on the event loop
        self._thread = threading.Thread(target=self._work, name="llama-batcher", daemon=True)
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def chat(self) -> ChatTemplate | None:
        return self._model.chat if self._model else None

    def load(self) -> None:
        """Loads the model (blocking: call it from a thread) and starts the batching loop."""
        s = self.settings
        started = time.perf_counter()
        self._model = LoadedModel(
            s.model_path,
            n_ctx=s.n_ctx,
            max_sequences=s.max_sequences,
            n_batch=s.prefill_chunk + s.max_sequences,
            n_threads=s.n_threads,
        )
        self._thread.start()
        log.info("loaded %s in %.1f s", s.model_path, time.perf_counter() - started)

    def tokenize(self, text: str) -> list[int]:
        assert self._model is not None, "load() first"
        return self._model.tokenize(text)

    async def generate(self, generation: Generation) -> AsyncIterator[Event]:
        """Streams Delta events and one Finished; closing the iterator stops the generation
        before its next step."""
        if self._model is None:
            raise Unavailable("the model is still loading; retry in a few seconds")
        limit = self.settings.max_queued_requests
        if self._waiting >= limit:
            raise ResourceExhausted(
                f"{self._waiting} requests are already waiting for the model, the most this "
                f"predictor queues (max_queued_requests={limit}); retry later",
                reason="QUEUE_FULL",
            )
        job = _Job(generation, asyncio.get_running_loop())
        self._waiting += 1
        metrics.QUEUED_REQUESTS.inc()
        self._inbox.put(job)
        try:
            while True:
                await job.ready.wait()
                for event in job.take():
                    if isinstance(event, BaseException):
                        raise event
                    yield event
                    if isinstance(event, Finished):
                        return
        finally:
            job.cancelled.set()

    def close(self) -> None:
        """Stops the loop after its current step and waits for it: the model must outlive
        any llama_decode still running (freeing it under one crashed the process)."""
        self._stopping = True
        self._inbox.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=CLOSE_WAIT_S)

    def _admitted(self) -> None:
        self._waiting -= 1

    # Everything below runs on the worker thread.

    def _work(self) -> None:
        assert self._model is not None
        model, s = self._model, self.settings
        batch = _internals.LlamaBatch(
            n_tokens=s.prefill_chunk + s.max_sequences, embd=0, n_seq_max=1, verbose=False
        )
        outbox = _Outbox()
        waiting: collections.deque[_Job] = collections.deque()
        running: dict[int, Sequence] = {}
        # The lowest free ids first: llama.cpp works on the span of KV streams a batch
        # touches, so the running sequences are kept on neighbouring streams.
        free_ids = list(range(s.max_sequences))  # a heap
        cached: dict[int, list[int]] = {}  # slot -> tokens its kept KV cells hold
        while not self._stopping:
            self._collect(waiting, block=not running and not waiting)
            for seq in [q for q in running.values() if q.job.cancelled.is_set()]:
                self._release(seq, running, free_ids, cached, "cancelled")
            for job in [j for j in waiting if j.cancelled.is_set()]:  # gone while waiting
                waiting.remove(job)
                self._dequeue(job)
                metrics.FINISHED.labels("cancelled").inc()
            # Admit in arrival order while a sequence slot (with its own KV cells) is free.
            while waiting and free_ids:
                job = waiting.popleft()
                self._dequeue(job)
                gen = job.generation
                try:
                    sampler = SamplerChain(gen.sampling, model.n_vocab, gen.prompt_tokens)
                except Exception as error:  # this request alone fails, as INTERNAL
                    log.exception("cannot build the sampler")
                    outbox.put(job, error)
                    continue
                seq_id = heapq.heappop(free_ids)
                seq = Sequence(job, seq_id, gen.prompt_tokens, gen.max_tokens, sampler, gen.stop)
                seq.n_past = _shared_prefix(cached.pop(seq_id, []), gen.prompt_tokens)
                model.forget(seq_id, keep=seq.n_past)
                running[seq_id] = seq
                metrics.PROMPT_TOKENS.inc(len(gen.prompt_tokens))
                metrics.CACHED_PROMPT_TOKENS.inc(seq.n_past)
            metrics.ACTIVE_SEQUENCES.set(len(running))
            metrics.KV_USED_TOKENS.set(sum(q.n_past for q in running.values()))
            if running:
                self._step(batch, running, free_ids, cached, outbox)
            outbox.send()
        batch.close()

    def _step(
        self,
        batch: _internals.LlamaBatch,
        running: dict[int, Sequence],
        free_ids: list[int],
        cached: dict[int, list[int]],
        outbox: _Outbox,
    ) -> None:
        """Decodes one token of every decoding sequence and a chunk of the prompts."""
        assert self._model is not None
        model = self._model
        for group in self._groups(running):
            try:
                samples = self._load(batch, group)
                model.context.decode(batch)
            except Exception as error:  # every running request learns it, as INTERNAL
                log.exception("llama.cpp decode failed")
                for seq in list(running.values()):
                    outbox.put(seq.job, error)
                    self._release(seq, running, free_ids, cached, "error")
                return
            for seq, index in samples:
                token = seq.sampler.sample(model.ctx, index)
                delta = seq.accept(token, model.piece(token), token in model.eog)
                if delta is not None:
                    outbox.put(seq.job, delta)
                if seq.finish_reason is not None:
                    reason = seq.finish_reason
                    outbox.put(seq.job, Finished(reason, len(seq.prompt), seq.completion))
                    self._release(seq, running, free_ids, cached, reason.value)
            # A prompt's first token goes out now, not after the step's other prompt chunks.
            outbox.send()

    def _collect(self, waiting: collections.deque[_Job], block: bool) -> None:
        """Moves newly submitted jobs into `waiting`; waits for one when there is no work."""
        try:
            job = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
            while True:
                if job is not None:
                    waiting.append(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _dequeue(self, job: _Job) -> None:
        metrics.QUEUED_REQUESTS.dec()
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(self._admitted)

    def _groups(self, running: dict[int, Sequence]) -> list[list[tuple[Sequence, int, bool]]]:
        """This step's batches of (sequence, token, wants logits): one with the next token of
        every decoding sequence, then prompt chunks, one batch per sequence, up to
        prefill_chunk tokens in all. Keeping each llama.cpp batch to one kind keeps it one
        micro-batch: with a KV stream per sequence, llama.cpp splits a mixed batch into
        many small ones."""
        decoding = [(q, q.next_token, True) for q in running.values() if q.next_token is not None]
        groups = [decoding] if decoding else []
        budget = self.settings.prefill_chunk
        for seq in running.values():
            if budget <= 0:
                break
            if seq.prefilling:
                start = seq.n_past
                chunk = seq.prompt[start : start + budget]
                budget -= len(chunk)
                last = len(seq.prompt) - 1
                groups.append([(seq, t, start + i == last) for i, t in enumerate(chunk)])
        return groups

    @staticmethod
    def _load(
        batch: _internals.LlamaBatch, group: list[tuple[Sequence, int, bool]]
    ) -> list[tuple[Sequence, int]]:
        """Writes a group into the batch; returns the sequences to sample and their index."""
        b = batch.batch
        samples = []
        for n, (seq, token, logits) in enumerate(group):
            b.token[n], b.pos[n], b.n_seq_id[n] = token, seq.n_past, 1
            b.seq_id[n][0], b.logits[n] = seq.seq_id, logits
            if logits:
                samples.append((seq, n))
                seq.next_token = None
            seq.n_past += 1
        b.n_tokens = len(group)
        return samples

    def _release(
        self,
        seq: Sequence,
        running: dict[int, Sequence],
        free_ids: list[int],
        cached: dict[int, list[int]],
        outcome: str,
    ) -> None:
        """Ends a sequence and frees its slot. Its KV cells stay for the slot's next request
        to reuse (prefix cache), unless that is off or the decode failed."""
        assert self._model is not None
        if self.settings.prefix_cache and outcome != "error":
            cached[seq.seq_id] = seq.cached_tokens()
        else:
            self._model.forget(seq.seq_id)
        seq.sampler.free()
        del running[seq.seq_id]
        heapq.heappush(free_ids, seq.seq_id)
        metrics.FINISHED.labels(outcome).inc()
        metrics.ACTIVE_SEQUENCES.set(len(running))
        metrics.KV_USED_TOKENS.set(sum(q.n_past for q in running.values()))


def _shared_prefix(cached: list[int], prompt: list[int]) -> int:
    """How many leading prompt tokens `cached` already holds; the last prompt token is always
    decoded again, since its logits give the first output token."""
    n = 0
    for a, b in zip(cached, prompt[:-1], strict=False):
        if a != b:
            break
        n += 1
    return n
