"""A llama.cpp sampler chain per request, built from its sampling parameters."""

from __future__ import annotations

import random

import llama_cpp

from runtime.textgen import Sampling

PENALTY_LAST_N = 64


class SamplerChain:
    """Penalties, top-k, top-p, temperature and a seeded draw; greedy at temperature 0.
    Runs in llama.cpp, on the logits of one position of the last batch."""

    def __init__(self, sampling: Sampling, n_vocab: int, prompt: list[int]) -> None:
        self.chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        add = lambda s: llama_cpp.llama_sampler_chain_add(self.chain, s)  # noqa: E731
        if sampling.repeat_penalty != 1.0:
            add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0
                )
            )
            for token in prompt[-PENALTY_LAST_N:]:  # the prompt counts as history
                llama_cpp.llama_sampler_accept(self.chain, token)
        if sampling.temperature == 0:
            add(llama_cpp.llama_sampler_init_greedy())
            return
        if sampling.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        add(llama_cpp.llama_sampler_init_dist(seed))

    def sample(self, ctx: llama_cpp.llama_context_p, batch_index: int) -> int:
        """Picks the next token from the logits at `batch_index` (and records it)."""
        return llama_cpp.llama_sampler_sample(self.chain, ctx, batch_index)

    def free(self) -> None:
        llama_cpp.llama_sampler_free(self.chain)
