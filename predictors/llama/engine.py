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
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()

    def close(self) -> None:
        """Stops the loop after its current step."""
        self._stopping = True
        self._inbox.put(None)

    def _admitted(self) -> None:
        self._waiting -= 1

    # Everything below runs on the worker thread.

    def _work(self) -> None:
        assert self._model is not None
        model, s = self._model, self.settings
        batch = _internals.LlamaBatch(
            n_tokens=s.prefill_chunk + s.max_sequences, embd=0, n_seq_max=1, verbose=False
        )
        waiting: collections.deque[_Job] = collections.deque()
        running: dict[int, Sequence] = {}
        # The lowest free ids first: llama.cpp works on the span of KV streams a batch
        # touches, so the running sequences are kept on neighbouring streams.
        free_ids = list(range(s.max_sequences))  # a heap
        while not self._stopping:
            self._collect(waiting, block=not running and not waiting)
            for seq in [q for q in running.values() if q.job.cancelled.is_set()]:
                self._release(seq, running, free_ids, "cancelled")
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
                    job.emit(error)
                    continue
                seq_id = heapq.heappop(free_ids)
                running[seq_id] = Sequence(
                    job, seq_id, gen.prompt_tokens, gen.max_tokens, sampler, gen.stop
                )
                metrics.PROMPT_TOKENS.inc(len(gen.prompt_tokens))
            metrics.ACTIVE_SEQUENCES.set(len(running))
            metrics.KV_USED_TOKENS.set(sum(q.n_past for q in running.values()))
            if not running:
                continue
            for group in self._groups(running):
                try:
                    samples = self._load(batch, group)
                    model.context.decode(batch)
                except Exception as error:  # every running request learns it, as INTERNAL
                    log.exception("llama.cpp decode failed")
                    for seq in list(running.values()):
                        seq.job.emit(error)
                        self._release(seq, running, free_ids, "error")
                    break
                for seq, index in samples:
                    token = seq.sampler.sample(model.ctx, index)
                    delta = seq.accept(token, model.piece(token), token in model.eog)
                    if delta is not None:
                        seq.job.emit(delta)
                    if seq.finish_reason is not None:
                        reason = seq.finish_reason
                        seq.job.emit(Finished(reason, len(seq.prompt), seq.completion))
                        self._release(seq, running, free_ids, reason.value)
        batch.close()

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
        self, seq: Sequence, running: dict[int, Sequence], free_ids: list[int], outcome: str
    ) -> None:
        """Ends a sequence: frees its KV cells, sampler and slot."""
        assert self._model is not None
        self._model.forget(seq.seq_id)
        seq.sampler.free()
        del running[seq.seq_id]
        heapq.heappush(free_ids, seq.seq_id)
        metrics.FINISHED.labels(outcome).inc()
        metrics.ACTIVE_SEQUENCES.set(len(running))
        metrics.KV_USED_TOKENS.set(sum(q.n_past for q in running.values()))
