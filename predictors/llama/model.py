"""A GGUF model loaded into llama.cpp, with one context that holds many sequences."""

from __future__ import annotations

import ctypes

import llama_cpp
from llama_cpp import _internals, _logger

from predictors.llama.chat import ChatTemplate


class LoadedModel:
    """The model's weights, vocabulary and chat template, and a context that holds up to
    `max_sequences` sequences (one per request), each with `n_ctx` KV cache cells of its own."""

    def __init__(
        self, path: str, *, n_ctx: int, max_sequences: int, n_batch: int, n_threads: int
    ) -> None:
        _logger.set_verbose(False)  # llama.cpp's own log: errors only
        params = llama_cpp.llama_model_default_params()
        self.model = _internals.LlamaModel(path_model=path, params=params, verbose=False)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx * max_sequences
        ctx_params.n_batch = ctx_params.n_ubatch = n_batch
        ctx_params.n_seq_max = max_sequences
        # A KV cache stream per sequence: attention then reads only the sequence's own cells,
        # so a greedy result does not depend on what else shares the batch (with one shared
        # buffer it did, measured: 1 or 2 of 8 outputs changed after about 30 tokens), and
        # it is faster.
        ctx_params.kv_unified = False
        ctx_params.n_threads = ctx_params.n_threads_batch = n_threads
        self.context = _internals.LlamaContext(model=self.model, params=ctx_params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = self.context.memory
        self.vocab = self.model.vocab
        self.n_vocab = self.model.n_vocab()
        self.eog = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)
        )
        # Every token's bytes, looked up once: the batching loop needs one per token.
        self._pieces = [self._token_bytes(t) for t in range(self.n_vocab)]
        text = self.model.token_get_text
        self.chat = ChatTemplate(
            self.model.metadata(), text(self.model.token_bos()), text(self.model.token_eos())
        )

    def _token_bytes(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        """The tokens of `text`; with `special`, the text of a control token (`<|im_end|>`)
        becomes that token, otherwise it is plain text. Reads only the vocabulary, so it is
        safe beside a running decode."""
        return self.model.tokenize(text.encode(), add_bos=add_bos, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (a part of a character, possibly)."""
        return self._pieces[token]

    def forget(self, seq_id: int, keep: int = 0) -> None:
        """Frees the KV cache cells of a sequence from position `keep` on."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, keep, -1)
