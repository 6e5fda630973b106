"""A multi-agent conversation in small: agents with their own system prompts take turns on a
shared task through the mesh, each turn streamed and timed."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from servemesh import Client


@dataclass(frozen=True)
class Agent:
    name: str
    system: str
    max_tokens: int


@dataclass(frozen=True)
class Turn:
    agent: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    seconds: float


def briefing(task: str, transcript: Sequence[Turn], agent: Agent) -> str:
    """What an agent reads before its turn: the task and every turn so far."""
    lines = [f"Task: {task}", ""]
    if transcript:
        lines += ["The conversation so far:"]
        lines += [f"{t.agent}: {t.text.strip()}" for t in transcript]
        lines += [""]
    lines += [f"You are the {agent.name}. Write your part now, briefly."]
    return "\n".join(lines)


def take_turn(
    client: Client, model: str, agent: Agent, task: str, transcript: Sequence[Turn]
) -> Turn:
    """One agent's turn, streamed to stdout as it arrives."""
    print(f"\n[{agent.name}] ", end="", flush=True)
    started = time.perf_counter()
    first, parts, usage = None, [], None
    for chunk in client.predict_stream(
        model,
        briefing(task, transcript, agent),
        system=agent.system,
        max_tokens=agent.max_tokens,
        temperature=0.7,
        seed=len(transcript),
    ):
        if chunk.text:
            first = first if first is not None else time.perf_counter() - started
            parts.append(chunk.text)
            sys.stdout.write(chunk.text)
        usage = chunk.usage or usage
    seconds = time.perf_counter() - started
    print(flush=True)
    return Turn(
        agent.name,
        "".join(parts),
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
        first if first is not None else seconds,
        seconds,
    )


def converse(client: Client, model: str, task: str, order: Sequence[Agent]) -> list[Turn]:
    """The agents' turns in `order` (an agent may appear more than once)."""
    transcript: list[Turn] = []
    for agent in order:
        transcript.append(take_turn(client, model, agent, task, transcript))
    return transcript


def per_agent(turns: Sequence[Turn]) -> dict[str, dict[str, float]]:
    """Turns, tokens read and written, seconds and median TTFT, for each agent."""
    table: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(t.agent for t in turns):
        mine = [t for t in turns if t.agent == name]
        table[name] = {
            "turns": len(mine),
            "prompt_tokens": sum(t.prompt_tokens for t in mine),
            "completion_tokens": sum(t.completion_tokens for t in mine),
            "seconds": round(sum(t.seconds for t in mine), 2),
            "ttft_ms_p50": round(statistics.median(t.ttft_s for t in mine) * 1000, 1),
        }
    return table


def markdown(task: str, turns: Sequence[Turn]) -> str:
    """The transcript as a Markdown page."""
    lines = [f"# Task\n\n{task}\n"]
    lines += [f"## {t.agent}\n\n{t.text.strip()}\n" for t in turns]
    return "\n".join(lines)
