"""A llama.cpp sampler chain per request, built from its sampling parameters, and for a request
with a response format, a grammar sampler beside it that keeps every token legal."""

from __future__ import annotations

import ctypes
import math
import random

import llama_cpp
import numpy as np
from llama_cpp import _internals

from runtime.textgen import Sampling

PENALTY_LAST_N = 64
ROOT = "root"  # the start rule of every grammar


class SamplerChain:
    """Penalties, top-k, top-p, temperature and a seeded draw; greedy at temperature 0.
    Runs in llama.cpp, on the logits of one position of the last batch."""

    def __init__(self, sampling: Sampling, n_vocab: int, prompt: list[int]) -> None:
        self.n_vocab = n_vocab
        # Greedy without a penalty keeps no state: the highest logit, the first on a tie as
        # llama.cpp's greedy sampler picks it. numpy finds it in 8 us where the chain, which
        # first copies the whole vocabulary into a candidates array, takes 85 (measured),
        # and the batching thread samples every running sequence each step.
        self.argmax = sampling.temperature == 0 and sampling.repeat_penalty == 1.0
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
        if self.argmax:
            return int(logits_at(ctx, batch_index, self.n_vocab).argmax())
        return llama_cpp.llama_sampler_sample(self.chain, ctx, batch_index)

    def free(self) -> None:
        llama_cpp.llama_sampler_free(self.chain)


def logits_at(ctx: llama_cpp.llama_context_p, batch_index: int, n_vocab: int) -> np.ndarray:
    """The logits of one position of the last batch, as a view into llama.cpp's buffer."""
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, batch_index), shape=(n_vocab,))


class GrammarDeadEnd(RuntimeError):
    """No token continues the grammar: the request cannot go on (and must not accept one,
    which llama.cpp answers by aborting the process)."""


def compile_grammar(
    vocab: llama_cpp.llama_vocab_p | None, grammar: str
) -> llama_cpp.llama_sampler_p:
    """llama.cpp's grammar sampler for a GBNF grammar whose start rule is `root`."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), ROOT.encode())
    if not sampler:
        raise ValueError("llama.cpp does not accept this grammar")
    return sampler


class GrammarSampler:
    """The request's SamplerChain, restricted to the tokens a GBNF grammar allows, as
    llama.cpp's common_sampler does it (common/sampling.cpp): draw from the chain alone, then
    ask the grammar about that one token; only when it is illegal, draw again with the grammar
    applied first, before top-k or greedy, so the draw is among legal tokens. Either way the
    grammar and the chain then accept the token. The grammar rules out the end-of-sequence
    token until the output is complete.

    Applying the grammar to the whole vocabulary for every token, as a grammar sampler at the
    head of the chain does, costs tens of milliseconds per token on this worker thread, which
    every sequence in the batch waits for; checking the drawn token first costs microseconds,
    and the full pass runs only for the tokens the model would have got wrong."""

    def __init__(
        self,
        sampling: Sampling,
        n_vocab: int,
        prompt: list[int],
        vocab: llama_cpp.llama_vocab_p,
        grammar: str,
    ) -> None:
        self.n_vocab = n_vocab
        self.grammar = compile_grammar(vocab, grammar)
        self.chain = SamplerChain(sampling, n_vocab, prompt)
        self.candidates = _internals.LlamaTokenDataArray(n_vocab=n_vocab)
        self._one = llama_cpp.llama_token_data(0, 0.0, 0.0)
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(self._one), size=1, selected=-1, sorted=False
        )
        self.redraws = 0  # tokens the grammar turned down, drawn again

    def sample(self, ctx: llama_cpp.llama_context_p, batch_index: int) -> int:
        """Picks the next legal token from the logits at `batch_index` (and records it)."""
        return self.sample_logits(logits_at(ctx, batch_index, self.n_vocab))

    def sample_logits(self, logits: np.ndarray) -> int:
        """Picks the next legal token from one position's logits (and records it)."""
        token = self._draw(logits, constrained=False)
        if not self._allows(token):
            self.redraws += 1
            token = self._draw(logits, constrained=True)
            if not self._allows(token):  # accepting it would abort the process
                raise GrammarDeadEnd("the grammar turned down the token drawn among legal ones")
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.chain, token)
        return token

    def _draw(self, logits: np.ndarray, constrained: bool) -> int:
        candidates = self.candidates
        candidates.copy_logits(logits)
        candidates.candidates.selected = -1
        array = ctypes.byref(candidates.candidates)
        if constrained:
            llama_cpp.llama_sampler_apply(self.grammar, array)
            if not np.isfinite(candidates.candidates_data.logit).any():
                raise GrammarDeadEnd("no token can continue the response format's grammar")
        llama_cpp.llama_sampler_apply(self.chain.chain, array)
        return int(candidates.candidates_data.id[candidates.candidates.selected])

    def _allows(self, token: int) -> bool:
        self._one.id, self._one.logit, self._one.p = token, 1.0, 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        return self._one.logit != -math.inf

    def free(self) -> None:
        llama_cpp.llama_sampler_free(self.grammar)
        self.chain.free()
