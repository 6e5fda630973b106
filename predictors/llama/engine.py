"""Continuous batching for llama.cpp: every step decodes one token of each running sequence,
plus a chunk of a waiting prompt, in one llama.cpp batch.

A new request joins between steps; its prompt is prefilled in chunks so running streams keep
flowing (chunked prefill). A finished, cancelled or timed-out request leaves at once and its
KV cache cells are freed. One worker thread owns llama.cpp; the event loop never waits on it.
What runs and what each step decodes is the scheduler's decision (scheduler.py); this module
carries it out on llama.cpp and hands the results to the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
from predictors.llama.request_trace import RequestTrace
from predictors.llama.sampling import GrammarDeadEnd, GrammarSampler, SamplerChain
from predictors.llama.scheduler import ERROR, Group, Scheduler
from predictors.llama.sequence import (
    Delta,
    Event,
    Finished,
    FinishReason,
    Generation,
    Sampler,
    Sequence,
)
from predictors.llama.settings import LlamaSettings
from servemesh.errors import Internal, ResourceExhausted, Unavailable

# The event types live with the sequence; servicers import them from here.
__all__ = ["Delta", "Event", "FinishReason", "Finished", "Generation", "LlamaEngine"]

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5
CLOSE_WAIT_S = 10.0


@dataclass
class _Job:
    """One caller's generation, and the events on their way to it."""

    generation: Generation
    loop: asyncio.AbstractEventLoop
    # Filled on the event loop by _deliver; `ready` wakes the one reader.
    events: collections.deque[Event | BaseException] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    trace: RequestTrace = field(default_factory=RequestTrace)  # its ids and stage times

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

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        assert self._model is not None, "load() first"
        return self._model.tokenize(text, special=special, add_bos=add_bos)

    async def generate(
        self, generation: Generation, trace: RequestTrace | None = None
    ) -> AsyncIterator[Event]:
        """Streams Delta events and one Finished; closing the iterator stops the generation
        before its next step. The batching loop records the stages it reaches in `trace`."""
        if self._model is None:
            raise Unavailable("the model is still loading; retry in a few seconds")
        limit = self.settings.max_queued_requests
        if self._waiting >= limit:
            raise ResourceExhausted(
                f"{self._waiting} requests are already waiting for the model, the most this "
                f"predictor queues (max_queued_requests={limit}); retry later",
                reason="QUEUE_FULL",
            )
        job = _Job(generation, asyncio.get_running_loop(), trace=trace or RequestTrace())
        job.trace.submitted = time.time_ns()
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
        scheduler: Scheduler[_Job] = Scheduler(
            max_sequences=s.max_sequences,
            prefill_chunk=s.prefill_chunk,
            prefix_cache=s.prefix_cache,
            forget=model.forget,
            make_sampler=self._sampler,
            dequeued=self._dequeue,
        )
        while not self._stopping:
            self._collect(scheduler, block=scheduler.idle)
            scheduler.release_cancelled()
            for job, error in scheduler.admit():  # this request alone fails, as INTERNAL
                log.error("cannot build the sampler", exc_info=error, extra=job.trace.log_ids)
                outbox.put(job, error)
            if scheduler.running:
                self._step(batch, scheduler, outbox)
            outbox.send()
        batch.close()

    def _sampler(self, gen: Generation) -> Sampler:
        """A sequence's own sampler: a grammar beside its chain when its output is constrained,
        so constrained and free sequences share the batch and differ only here."""
        assert self._model is not None
        model = self._model
        if gen.grammar is None:
            return SamplerChain(gen.sampling, model.n_vocab, gen.prompt_tokens)
        return GrammarSampler(
            gen.sampling, model.n_vocab, gen.prompt_tokens, model.vocab, gen.grammar
        )

    def _step(
        self, batch: _internals.LlamaBatch, scheduler: Scheduler[_Job], outbox: _Outbox
    ) -> None:
        """Decodes the scheduler's plan for this step, one llama.cpp batch per group, and
        samples where the plan wants logits."""
        assert self._model is not None
        model = self._model
        for group in scheduler.schedule():
            try:
                samples = self._load(batch, group)
                model.context.decode(batch)
            except Exception as error:  # every running request learns it, as INTERNAL
                log.exception("llama.cpp decode failed")
                for seq in list(scheduler.running.values()):
                    outbox.put(seq.job, error)
                    scheduler.release(seq, ERROR)
                return
            generated = 0
            for seq, index in samples:
                generated += self._advance(seq, index, scheduler, outbox)
            if generated:  # one counter update per batch, not per token
                metrics.GENERATED_TOKENS.inc(generated)
            # A prompt's first token goes out now, not after the step's other prompt chunks.
            outbox.send()

    def _advance(
        self, seq: Sequence[_Job], index: int, scheduler: Scheduler[_Job], outbox: _Outbox
    ) -> int:
        """Samples `seq`'s next token from the logits at `index`; while it equals the draft
        token decoded after it, samples the next one from that draft's logits too (each
        accepted token then saw exactly the context it would have seen decoded alone). Returns
        the number of tokens generated."""
        assert self._model is not None
        model, drafts = self._model, seq.drafts
        generated = kept = 0
        for offset in range(len(drafts) + 1):
            try:
                token = seq.sampler.sample(model.ctx, index + offset)
            except GrammarDeadEnd:  # this request alone fails
                log.exception("grammar dead end", extra=seq.job.trace.log_ids)
                outbox.put(
                    seq.job,
                    Internal(
                        "the response format's grammar allows no next token",
                        reason="GRAMMAR_DEAD_END",
                    ),
                )
                scheduler.release(seq, ERROR)
                return generated
            if seq.completion == 0:  # its first sampled token, whatever it is
                self._first_token(seq)
            is_eog = token in model.eog
            if not is_eog:
                generated += 1
            delta = seq.accept(token, model.piece(token), is_eog)
            if delta is not None:
                outbox.put(seq.job, delta)
            if seq.finish_reason is not None or offset == len(drafts) or token != drafts[offset]:
                break
            kept += 1
        if drafts:
            scheduler.verified(seq, kept)
        if seq.finish_reason is not None:
            seq.job.trace.finished = time.time_ns()
            reason = seq.finish_reason
            outbox.put(seq.job, Finished(reason, len(seq.prompt), seq.completion))
            scheduler.release(seq, reason.value)
        return generated

    @staticmethod
    def _first_token(seq: Sequence[_Job]) -> None:
        """A sequence's prompt is in and its first token sampled: once per request."""
        elapsed = time.perf_counter() - seq.started
        metrics.TIME_TO_FIRST_TOKEN.observe(elapsed)
        trace = seq.job.trace
        trace.first_token, trace.cached_tokens = time.time_ns(), seq.reused
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "slot %d: first token %.1f ms after admission; %d prompt tokens, %d of them cached",
                seq.seq_id,
                elapsed * 1000,
                len(seq.prompt),
                seq.reused,
                extra=trace.log_ids,
            )

    def _collect(self, scheduler: Scheduler[_Job], block: bool) -> None:
        """Hands newly submitted jobs to the scheduler; waits for one when there is no work."""
        try:
            job = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
            while True:
                if job is not None:
                    scheduler.submit(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _dequeue(self, job: _Job) -> None:
        """A job left the waiting queue (started, failed or cancelled): it no longer counts
        against max_queued_requests."""
        job.trace.admitted = time.time_ns()
        metrics.QUEUED_REQUESTS.dec()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts any more
            job.loop.call_soon_threadsafe(self._admitted)

    @staticmethod
    def _load(batch: _internals.LlamaBatch, group: Group[_Job]) -> list[tuple[Sequence[_Job], int]]:
        """Writes a group into the batch; returns the sequences to sample and the index of
        each one's first logits (its drafts' logits follow)."""
        b = batch.batch
        samples: dict[Sequence[_Job], int] = {}
        for n, (seq, token, pos, logits) in enumerate(group):
            b.token[n], b.pos[n], b.n_seq_id[n] = token, pos, 1
            b.seq_id[n][0], b.logits[n] = seq.seq_id, logits
            if logits:
                samples.setdefault(seq, n)
        b.n_tokens = len(group)
        return list(samples.items())
