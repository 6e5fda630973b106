"""The llama predictor's samplers on a real model's logits."""

from __future__ import annotations

import llama_cpp
from llama_cpp import _internals

from predictors.llama.model import LoadedModel
from predictors.llama.sampling import SamplerChain
from predictors.llama.settings import default_model_path
from runtime.textgen import Sampling


def test_the_greedy_shortcut_picks_what_llama_cpps_greedy_sampler_picks() -> None:
    model = LoadedModel(default_model_path(), n_ctx=128, max_sequences=1, n_batch=64, n_threads=2)
    prompt = model.tokenize(
        "1, 2, 3, 4, the capital of Japan is Tokyo and", special=False, add_bos=False
    )
    batch = _internals.LlamaBatch(n_tokens=64, embd=0, n_seq_max=1, verbose=False)
    b = batch.batch
    for i, token in enumerate(prompt):  # logits at every position: many different maxima
        b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = token, i, 1, 0, True
    b.n_tokens = len(prompt)
    model.context.decode(batch)
    shortcut = SamplerChain(Sampling(temperature=0), model.n_vocab, prompt)
    reference = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(reference, llama_cpp.llama_sampler_init_greedy())
    assert shortcut.argmax
    picked = [shortcut.sample(model.ctx, i) for i in range(len(prompt))]
    expected = [llama_cpp.llama_sampler_sample(reference, model.ctx, i) for i in range(len(prompt))]
    assert picked == expected and len(set(expected)) > 3
    penalised = SamplerChain(Sampling(temperature=0, repeat_penalty=1.1), model.n_vocab, [])
    assert not penalised.argmax, "a penalty keeps a history: the chain must sample"
    penalised.free()
    llama_cpp.llama_sampler_free(reference)
    shortcut.free()
    batch.close()
