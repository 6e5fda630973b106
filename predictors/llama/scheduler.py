"""The batching loop's decisions: which requests run, on which sequence slot, what each step
decodes, and what a finished request leaves in the KV cache for the next one.

Pure Python: the model reaches it only through two callables (forget a slot's KV cells,
build a sampler), so a fake model can stand in. It runs on the engine's worker thread and
takes no locks.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Callable
from typing import Generic

from predictors.llama import metrics
from predictors.llama.sequence import Generation, J, Sampler, Sequence

# One token of a llama.cpp batch: (sequence, token, position, whether its logits are wanted).
# A plain tuple: one is made per token on the hot path.
Token = tuple[Sequence[J], int, int, bool]
# Tokens decoded together in one llama.cpp batch.
Group = list[Token[J]]

CANCELLED = "cancelled"
ERROR = "error"


def _ignore(_job: object) -> None:
    pass


class Scheduler(Generic[J]):
    """Owns the waiting jobs, the running sequences, the free sequence slots and what each
    slot's KV cells hold, and decides admission, each step's plan and release."""

    def __init__(
        self,
        *,
        max_sequences: int,
        prefill_chunk: int,
        prefix_cache: bool,
        forget: Callable[[int, int], None],
        make_sampler: Callable[[Generation], Sampler],
        dequeued: Callable[[J], None] = _ignore,
    ) -> None:
        """`forget(seq_id, keep)` frees a slot's KV cells from position `keep` on;
        `make_sampler` builds a job's sampler (an exception fails that job alone);
        `dequeued(job)` is told of every job that leaves the waiting queue."""
        self.prefill_chunk = prefill_chunk
        self.prefix_cache = prefix_cache
        self._forget = forget
        self._make_sampler = make_sampler
        self._dequeued = dequeued
        self.waiting: collections.deque[J] = collections.deque()
        self.running: dict[int, Sequence[J]] = {}  # by seq_id, in admission order
        # The lowest free ids first: llama.cpp works on the span of KV streams a batch
        # touches, so the running sequences are kept on neighbouring streams.
        self._free_ids = list(range(max_sequences))  # a heap
        self._cached: dict[int, list[int]] = {}  # slot -> tokens its kept KV cells hold

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits: the worker may block for new jobs."""
        return not self.running and not self.waiting

    def submit(self, job: J) -> None:
        self.waiting.append(job)

    def kv_used(self) -> int:
        """KV cells filled by the running sequences."""
        return sum(q.n_past for q in self.running.values())

    def release_cancelled(self) -> None:
        """Frees the slots of running sequences whose caller has gone, and drops waiting jobs
        whose caller has gone."""
        for seq in [q for q in self.running.values() if q.job.cancelled.is_set()]:
            self.release(seq, CANCELLED)
        for job in [j for j in self.waiting if j.cancelled.is_set()]:
            self.waiting.remove(job)
            self._dequeued(job)
            metrics.FINISHED.labels(CANCELLED).inc()

    def admit(self) -> list[tuple[J, Exception]]:
        """Starts waiting jobs, in arrival order, while a sequence slot (with its own KV
        cells) is free. Returns the jobs that failed to start, with why."""
        failed: list[tuple[J, Exception]] = []
        while self.waiting and self._free_ids:
            job = self.waiting.popleft()
            self._dequeued(job)
            gen = job.generation
            try:
                sampler = self._make_sampler(gen)
            except Exception as error:  # this request alone fails; the engine logs it
                failed.append((job, error))
                continue
            seq_id = heapq.heappop(self._free_ids)
            seq = Sequence(
                job, seq_id, gen.prompt_tokens, gen.max_tokens, sampler, gen.stop, gen.draft_tokens
            )
            seq.n_past = seq.reused = shared_prefix(self._cached.pop(seq_id, []), gen.prompt_tokens)
            self._forget(seq_id, seq.n_past)
            self.running[seq_id] = seq
            metrics.PROMPT_TOKENS.inc(len(gen.prompt_tokens))
            metrics.CACHED_PROMPT_TOKENS.inc(seq.n_past)
        self._observe()
        return failed

    def schedule(self) -> list[Group[J]]:
        """This step's llama.cpp batches: one with the next token of every decoding sequence,
        each followed by its draft tokens when it speculates (up to prefill_chunk drafts in
        all: the batch's room beyond one token per sequence), then prompt chunks, one batch
        per sequence, up to prefill_chunk tokens in all.
        Keeping each llama.cpp batch to one kind keeps it one micro-batch: with a KV stream
        per sequence, llama.cpp splits a mixed batch into many small ones.

        Planning a token moves its sequence's n_past past it, so the plan carries each
        token's position; the engine decodes the groups in order and samples where logits are
        wanted. Each sequence appears in at most one group of a step."""
        decoding: Group[J] = []
        draft_budget = self.prefill_chunk
        for seq in self.running.values():
            token = seq.next_token
            if token is not None:
                start = seq.n_past
                decoding.append((seq, token, start, True))
                seq.drafts = seq.propose(draft_budget)
                draft_budget -= len(seq.drafts)
                decoding.extend((seq, t, p, True) for p, t in enumerate(seq.drafts, start + 1))
                seq.n_past = start + 1 + len(seq.drafts)
                seq.next_token = None
        groups = [decoding] if decoding else []
        budget = self.prefill_chunk
        for seq in self.running.values():
            if budget <= 0:
                break
            if seq.prefilling:
                start = seq.n_past
                chunk = seq.prompt[start : start + budget]
                budget -= len(chunk)
                last = len(seq.prompt) - 1
                groups.append([(seq, t, p, p == last) for p, t in enumerate(chunk, start)])
                seq.n_past = start + len(chunk)
        return groups

    def verified(self, seq: Sequence[J], kept: int) -> None:
        """The step decoded `seq`'s drafts and the model agreed with the first `kept`: the KV
        cells of the rest are freed, so the sequence goes on from its last agreed token."""
        rejected = len(seq.drafts) - kept
        if rejected:
            seq.n_past -= rejected
            self._forget(seq.seq_id, seq.n_past)
        metrics.DRAFT_TOKENS.inc(len(seq.drafts))
        metrics.ACCEPTED_DRAFT_TOKENS.inc(kept)
        seq.verified(kept)

    def release(self, seq: Sequence[J], outcome: str) -> None:
        """Ends a sequence and frees its slot. Its KV cells stay for the slot's next request
        to reuse (prefix cache), unless that is off or the decode failed (the cells may hold
        anything then)."""
        if self.prefix_cache and outcome != ERROR:
            self._cached[seq.seq_id] = seq.cached_tokens()
        else:
            self._forget(seq.seq_id, 0)
        seq.sampler.free()
        del self.running[seq.seq_id]
        heapq.heappush(self._free_ids, seq.seq_id)
        metrics.FINISHED.labels(outcome).inc()
        self._observe()

    def _observe(self) -> None:
        metrics.ACTIVE_SEQUENCES.set(len(self.running))
        metrics.KV_USED_TOKENS.set(self.kv_used())


def shared_prefix(cached: list[int], prompt: list[int]) -> int:
    """How many leading prompt tokens `cached` already holds; the last prompt token is always
    decoded again, since its logits give the first output token."""
    n = 0
    for a, b in zip(cached, prompt[:-1], strict=False):
        if a != b:
            break
        n += 1
    return n
