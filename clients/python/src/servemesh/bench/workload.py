"""The requests a benchmark sends: prompts, their lengths, and when each one starts."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

# Words for synthetic prompts: common, single-token-ish English words.
_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "time year people way day man thing woman life child world school state family "
    "student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money story "
    "fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name "
    "president team minute idea"
).split()


@dataclass(frozen=True)
class BenchRequest:
    """One prompt and how many tokens to generate for it."""

    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class Workload:
    num_prompts: int
    input_len: tuple[int, int]  # words in a synthetic prompt, fixed when min == max
    output_len: tuple[int, int]
    seed: int = 0
    dataset: Path | None = None

    def requests(self) -> list[BenchRequest]:
        """The same list for the same settings, so every system gets the same prompts."""
        rng = random.Random(self.seed)
        prompts = self._dataset_prompts() if self.dataset else None
        requests = []
        for i in range(self.num_prompts):
            if prompts:
                prompt = prompts[i % len(prompts)]
            else:
                words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(*self.input_len)))
                prompt = f"Write a long story that uses these words: {words}.\n\nStory:"
            requests.append(BenchRequest(prompt, rng.randint(*self.output_len)))
        return requests

    def _dataset_prompts(self) -> list[str]:
        """Prompts from a JSONL file with a "prompt" field on each line."""
        assert self.dataset is not None
        lines = self.dataset.read_text().splitlines()
        return [json.loads(line)["prompt"] for line in lines if line.strip()]


def arrival_delays(n: int, request_rate: float | None, seed: int) -> list[float]:
    """Seconds between request starts: Poisson arrivals at `request_rate`, or all at once."""
    if not request_rate:
        return [0.0] * n
    rng = random.Random(seed + 1)
    return [rng.expovariate(request_rate) for _ in range(n)]
