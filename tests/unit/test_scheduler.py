"""The llama predictor's scheduler with a fake model: admission, slots, step plans, prefix
cache and release, without llama.cpp or servers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client import REGISTRY

from predictors.llama.prompt_lookup import PromptLookup
from predictors.llama.scheduler import CANCELLED, ERROR, Group, Scheduler, shared_prefix
from predictors.llama.sequence import Generation, Sequence
from runtime.textgen import Sampling

FINISHED = "servemesh_llama_generations_finished_total"


@dataclass(eq=False)
class FakeJob:
    generation: Generation
    cancelled: threading.Event = field(default_factory=threading.Event)


class FakeSampler:
    def __init__(self) -> None:
        self.freed = False

    def sample(self, ctx: object, batch_index: int) -> int:
        raise AssertionError("the scheduler never samples")

    def free(self) -> None:
        assert not self.freed, "freed twice"
        self.freed = True


class FakeModel:
    """Stands in for llama.cpp: records which KV cells are forgotten and which samplers made."""

    def __init__(self, failing: set[int] | None = None) -> None:
        self.forgotten: list[tuple[int, int]] = []
        self.samplers: list[FakeSampler] = []
        self.failing = failing or set()  # prompts starting with these tokens fail to start

    def forget(self, seq_id: int, keep: int) -> None:
        self.forgotten.append((seq_id, keep))

    def make_sampler(self, generation: Generation) -> FakeSampler:
        if generation.prompt_tokens[0] in self.failing:
            raise ValueError("bad sampling")
        self.samplers.append(FakeSampler())
        return self.samplers[-1]


def job(*prompt: int, max_tokens: int = 100) -> FakeJob:
    return FakeJob(Generation(list(prompt), max_tokens, Sampling(temperature=0)))


def scheduler(
    model: FakeModel,
    *,
    max_sequences: int = 4,
    prefill_chunk: int = 256,
    prefix_cache: bool = True,
    dequeued: list[FakeJob] | None = None,
) -> Scheduler[FakeJob]:
    return Scheduler(
        max_sequences=max_sequences,
        prefill_chunk=prefill_chunk,
        prefix_cache=prefix_cache,
        forget=model.forget,
        make_sampler=model.make_sampler,
        dequeued=(dequeued.append if dequeued is not None else lambda _: None),
    )


def start(s: Scheduler[FakeJob], *jobs: FakeJob) -> None:
    for j in jobs:
        s.submit(j)
    assert s.admit() == []


def ids(s: Scheduler[FakeJob]) -> dict[int, FakeJob]:
    return {seq_id: seq.job for seq_id, seq in s.running.items()}


def plan(groups: list[Group[FakeJob]]) -> list[list[tuple[int, int, int, bool]]]:
    """A plan as (seq_id, token, position, wants logits), comparable with ==."""
    return [[(q.seq_id, t, p, lg) for q, t, p, lg in g] for g in groups]


def step(
    s: Scheduler[FakeJob],
    token: Callable[[Sequence[FakeJob]], int] = lambda q: 100 + q.completion,
    eog: frozenset[int] = frozenset(),
) -> list[list[tuple[int, int, int, bool]]]:
    """One engine step with a fake decode: samples `token(seq)` where the plan wants logits,
    and releases what finishes, as the engine does. Returns the plan."""
    groups = s.schedule()
    for group in groups:
        for seq, _, _, logits in group:
            if logits:
                t = token(seq)
                seq.accept(t, b"x", t in eog)
                if seq.finish_reason is not None:
                    s.release(seq, seq.finish_reason.value)
    return plan(groups)


def finished(outcome: str) -> float:
    return REGISTRY.get_sample_value(FINISHED, {"outcome": outcome}) or 0.0


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(f"servemesh_llama_{name}")


# Admission


def test_admits_in_arrival_order_while_a_slot_is_free() -> None:
    dequeued: list[FakeJob] = []
    s = scheduler(FakeModel(), max_sequences=2, dequeued=dequeued)
    a, b, c = job(1), job(2), job(3)
    start(s, a, b, c)
    assert ids(s) == {0: a, 1: b}
    assert list(s.waiting) == [c]
    assert dequeued == [a, b]
    assert gauge("active_sequences") == 2


def test_a_waiting_job_starts_when_a_slot_frees() -> None:
    s = scheduler(FakeModel(), max_sequences=1)
    a, b = job(1, 2), job(3, 4)
    start(s, a, b)
    s.release(s.running[0], "length")
    assert s.admit() == []
    assert ids(s) == {0: b}
    assert not s.waiting


def test_the_lowest_free_id_is_reused_first() -> None:
    s = scheduler(FakeModel(), max_sequences=4)
    a, b, c, d = job(1), job(2), job(3), job(4)
    start(s, a, b, c, d)
    s.release(s.running[2], "length")
    s.release(s.running[0], "length")
    s.release(s.running[3], "length")
    e, f = job(5), job(6)
    start(s, e, f)
    assert ids(s) == {1: b, 0: e, 2: f}


def test_a_job_whose_sampler_fails_alone_fails_and_takes_no_slot() -> None:
    dequeued: list[FakeJob] = []
    s = scheduler(FakeModel(failing={9}), max_sequences=1, dequeued=dequeued)
    bad, good = job(9, 1), job(1, 2)
    s.submit(bad)
    s.submit(good)
    failed = s.admit()
    assert [(j, str(e)) for j, e in failed] == [(bad, "bad sampling")]
    assert ids(s) == {0: good}
    assert dequeued == [bad, good]


# Cancellation


def test_a_job_cancelled_while_waiting_is_dropped_and_counted() -> None:
    dequeued: list[FakeJob] = []
    model = FakeModel()
    s = scheduler(model, max_sequences=1, dequeued=dequeued)
    a, b, c = job(1), job(2), job(3)
    start(s, a, b, c)
    before = finished(CANCELLED)
    b.cancelled.set()
    s.release_cancelled()
    assert list(s.waiting) == [c]
    assert dequeued == [a, b]
    assert finished(CANCELLED) == before + 1
    assert len(model.samplers) == 1, "no sampler built for the dropped job"
    assert ids(s) == {0: a}


def test_a_job_cancelled_while_running_releases_its_slot() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=2)
    a, b, c = job(1, 2, 3), job(4, 5), job(6, 7)
    start(s, a, b, c)
    step(s)  # both prefill and sample a first token
    before = finished(CANCELLED)
    a.cancelled.set()
    s.release_cancelled()
    assert ids(s) == {1: b}
    assert model.samplers[0].freed and not model.samplers[1].freed
    assert finished(CANCELLED) == before + 1
    assert s.admit() == []
    assert ids(s) == {0: c, 1: b}


# Step plans


def test_prefill_budget_is_split_across_sequences_and_steps() -> None:
    s = scheduler(FakeModel(), prefill_chunk=4)
    start(s, job(1, 2, 3), job(11, 12, 13, 14, 15), job(21, 22))
    assert step(s) == [
        [(0, 1, 0, False), (0, 2, 1, False), (0, 3, 2, True)],
        [(1, 11, 0, False)],
    ]
    assert step(s) == [
        [(0, 100, 3, True)],  # the decoding group first
        [(1, 12, 1, False), (1, 13, 2, False), (1, 14, 3, False), (1, 15, 4, True)],
    ]
    assert step(s) == [
        [(0, 101, 4, True), (1, 100, 5, True)],
        [(2, 21, 0, False), (2, 22, 1, True)],
    ]
    assert step(s) == [[(0, 102, 5, True), (1, 101, 6, True), (2, 100, 2, True)]]
    assert s.kv_used() == 6 + 7 + 3


def test_a_long_prompt_takes_the_whole_budget_and_the_next_step() -> None:
    s = scheduler(FakeModel(), prefill_chunk=3)
    start(s, job(1, 2, 3, 4, 5), job(6))
    assert step(s) == [[(0, 1, 0, False), (0, 2, 1, False), (0, 3, 2, False)]]
    assert step(s) == [[(0, 4, 3, False), (0, 5, 4, True)], [(1, 6, 0, True)]]
    assert s.running[0].generated == [100] and s.running[1].generated == [100]


def test_no_plan_when_nothing_runs() -> None:
    assert scheduler(FakeModel()).schedule() == []


# Release and the prefix cache


def test_release_after_finish_frees_the_slot_and_keeps_the_kv_cells() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=2)
    start(s, job(1, 2, 3, max_tokens=2))
    before = finished("length")
    step(s)  # prefill; samples 100
    step(s)  # decodes 100; samples 101: the second token ends it
    assert s.running == {}
    assert model.samplers[0].freed
    assert finished("length") == before + 1
    assert gauge("active_sequences") == 0
    assert gauge("kv_used_tokens") == 0
    assert model.forgotten == [(0, 0)], "only the forget at admission: the cells stay"
    assert s.idle


def test_an_eos_token_finishes_with_its_reason() -> None:
    s = scheduler(FakeModel())
    start(s, job(1, 2))
    before = finished("eos_token")
    assert step(s, token=lambda q: 7, eog=frozenset({7})) == [[(0, 1, 0, False), (0, 2, 1, True)]]
    assert s.running == {}
    assert finished("eos_token") == before + 1


def _finish_on_slot_0(s: Scheduler[FakeJob], *prompt: int) -> None:
    """Runs `prompt` on slot 0 until it has generated 100 and 101 (101 is never decoded)."""
    start(s, job(*prompt, max_tokens=2))
    assert list(s.running) == [0]
    step(s)
    step(s)
    assert s.running == {}


def test_the_next_request_on_a_slot_skips_the_prefix_its_cells_hold() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=1)
    _finish_on_slot_0(s, 1, 2, 3, 4)  # its cells hold 1 2 3 4 100
    start(s, job(1, 2, 3, 4, 100, 5, 6))
    assert s.running[0].n_past == 5
    assert model.forgotten[-1] == (0, 5), "cells after the shared prefix are freed"
    assert step(s) == [[(0, 5, 5, False), (0, 6, 6, True)]]


def test_the_last_prompt_token_is_always_decoded_again() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=1)
    _finish_on_slot_0(s, 1, 2, 3, 4)
    start(s, job(1, 2, 3, 4))  # the same prompt: all of it is cached
    assert s.running[0].n_past == 3
    assert model.forgotten[-1] == (0, 3)
    assert step(s) == [[(0, 4, 3, True)]]


def test_a_prompt_that_differs_early_reuses_only_the_common_part() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=2)
    _finish_on_slot_0(s, 1, 2, 3, 4)
    start(s, job(1, 9, 3, 4))
    assert s.running[0].n_past == 1
    assert model.forgotten[-1] == (0, 1)


def test_a_cancelled_sequence_keeps_its_cells_for_the_next_request() -> None:
    s = scheduler(FakeModel(), max_sequences=1)
    a = job(1, 2, 3)
    start(s, a)
    step(s)  # prefilled 1 2 3, sampled 100 (not yet decoded)
    a.cancelled.set()
    s.release_cancelled()
    start(s, job(1, 2, 3, 100, 5))
    assert s.running[0].n_past == 3


def test_a_failed_decode_drops_the_slots_cache() -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=1)
    start(s, job(1, 2, 3, 4))
    step(s)
    before = finished(ERROR)
    s.release(s.running[0], ERROR)
    assert model.forgotten[-1] == (0, 0)
    assert finished(ERROR) == before + 1
    start(s, job(1, 2, 3, 4))
    assert s.running[0].n_past == 0


@pytest.mark.parametrize("outcome", ["length", CANCELLED, ERROR])
def test_with_the_prefix_cache_off_every_release_forgets_the_cells(outcome: str) -> None:
    model = FakeModel()
    s = scheduler(model, max_sequences=1, prefix_cache=False)
    start(s, job(5, 6, 7))
    step(s)
    s.release(s.running[0], outcome)
    assert model.forgotten == [(0, 0), (0, 0)]
    start(s, job(5, 6, 7))
    assert s.running[0].n_past == 0


def test_shared_prefix_never_covers_the_last_prompt_token() -> None:
    assert shared_prefix([1, 2, 3], [1, 2, 3]) == 2
    assert shared_prefix([1, 2, 3, 4, 5], [1, 2, 3]) == 2
    assert shared_prefix([1, 2], [1, 2, 3, 4]) == 2
    assert shared_prefix([1, 7, 3], [1, 2, 3, 4]) == 1
    assert shared_prefix([], [1, 2]) == 0
    assert shared_prefix([1], [1]) == 0


# Speculative decoding


def drafting_job(*prompt: int, draft: int, max_tokens: int = 100) -> FakeJob:
    return FakeJob(Generation(list(prompt), max_tokens, Sampling(temperature=0), (), None, draft))


def test_prompt_lookup_drafts_what_followed_the_latest_earlier_occurrence() -> None:
    lookup = PromptLookup([5, 6, 7, 8, 9, 1, 6, 7, 2, 3])
    assert lookup.draft(4) == []  # (2, 3) and (3,) never occurred before: no draft
    lookup.append(6)
    lookup.append(7)
    assert lookup.draft(3) == [2, 3, 6], "the latest occurrence of (6, 7) wins"
    assert lookup.draft(0) == []


def test_prompt_lookup_prefers_the_longest_matching_ngram() -> None:
    # (1, 2) is followed by 9 at its latest occurrence, but (0, 1, 2) by 4.
    lookup = PromptLookup([0, 1, 2, 4, 4, 1, 2, 9, 0, 1, 2])
    assert lookup.draft(2) == [4, 4]


def test_a_speculating_sequence_decodes_its_drafts_after_its_next_token() -> None:
    s = scheduler(FakeModel())
    start(s, drafting_job(1, 2, 3, 1, 2, draft=2), job(1, 2, 3, 1, 2))
    s.schedule()  # the prompts
    for seq in s.running.values():
        seq.accept(3, b"x", False)  # both end 1 2 3 1 2 3; (1, 2, 3) was followed by 1 2
    assert plan(s.schedule()) == [
        [(0, 3, 5, True), (0, 1, 6, True), (0, 2, 7, True), (1, 3, 5, True)]
    ]
    assert s.running[0].n_past == 8 and s.running[1].n_past == 6


def test_rejected_drafts_free_their_cells_and_are_counted() -> None:
    model = FakeModel()
    s = scheduler(model)
    start(s, drafting_job(1, 2, 3, 1, 2, draft=2))
    s.schedule()
    seq = s.running[0]
    seq.accept(3, b"x", False)
    s.schedule()  # decodes 3 at 5 and the drafts 1, 2 at 6, 7
    drafted = REGISTRY.get_sample_value("servemesh_llama_draft_tokens_total") or 0.0
    seq.accept(1, b"x", False)  # the model agreed with the first draft only
    seq.accept(9, b"x", False)
    s.verified(seq, kept=1)
    assert seq.n_past == 7 and seq.drafts == []
    assert model.forgotten[-1] == (0, 7), "the cells of the rejected draft go"
    assert seq.cached_tokens() == [1, 2, 3, 1, 2, 3, 1]
    assert REGISTRY.get_sample_value("servemesh_llama_draft_tokens_total") == drafted + 2


def test_drafts_stay_within_max_tokens_and_the_step_budget() -> None:
    s = scheduler(FakeModel(), prefill_chunk=3)
    prompt = [1, 2, 3, 4, 5, 6, 1, 2]  # ... 1 2 -> 3 drafts 3, 4, 5, 6, 1, 2
    start(s, drafting_job(*prompt, draft=8, max_tokens=3), drafting_job(*prompt, draft=8))
    while any(q.prefilling for q in s.running.values()):
        s.schedule()
    for seq in s.running.values():
        seq.accept(3, b"x", False)
    s.schedule()
    # max_tokens 3 with one token generated: at most one draft, so the step never yields a
    # fourth token; the second sequence gets what is left of the step's 3 draft tokens.
    assert [q.drafts for q in s.running.values()] == [[4], [4, 5]]
