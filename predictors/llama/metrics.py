"""Prometheus metrics of the llama predictor: what runs, what waits, what was produced."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_SEQUENCES = Gauge(
    "servemesh_llama_active_sequences", "Generations that llama.cpp is decoding now."
)
QUEUED_REQUESTS = Gauge("servemesh_llama_queued_requests", "Generations waiting for the model.")
KV_USED_TOKENS = Gauge(
    "servemesh_llama_kv_used_tokens", "KV cache cells filled by running sequences."
)
GENERATED_TOKENS = Counter(
    "servemesh_llama_generated_tokens", "Tokens generated, over all requests."
)
DRAFT_TOKENS = Counter(
    "servemesh_llama_draft_tokens",
    "Prompt-lookup draft tokens verified by speculative decoding.",
)
ACCEPTED_DRAFT_TOKENS = Counter(
    "servemesh_llama_accepted_draft_tokens",
    "Draft tokens the model agreed with: each one a token produced without a decode of its own.",
)
PROMPT_TOKENS = Counter("servemesh_llama_prompt_tokens", "Prompt tokens processed.")
CACHED_PROMPT_TOKENS = Counter(
    "servemesh_llama_cached_prompt_tokens",
    "Prompt tokens not prefilled: their KV cells were kept from the slot's previous request.",
)
FINISHED = Counter(
    "servemesh_llama_generations_finished",
    "Generations that ended, by how they ended.",
    ["outcome"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "servemesh_llama_time_to_first_token_seconds",
    "From the start of a generation to its first token.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
