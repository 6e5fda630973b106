"""TorchServe handler: sentence embeddings with all-MiniLM-L6-v2, batched.

Input: UTF-8 text as `text`, `data` or `body`. Output per request: {"embedding": [384
floats], "batch_size": N}. Mean pooling over the tokens, then L2 normalisation, so a dot
product of two embeddings is their cosine similarity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from handler_io import BadInput, Batch, main_input, to_json
from transformers import AutoModel, AutoTokenizer

MAX_TOKENS = 256


class SentenceEmbeddings:
    """Embeds a batch of sentences in one forward pass."""

    def initialize(self, context: Any) -> None:
        path = context.system_properties["model_dir"]  # the archive holds the model's files
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.initialized = True

    @staticmethod
    def _parse(row: dict[str, Any]) -> str:
        text = main_input(row, ("text", "data", "body")).decode("utf-8", errors="replace")
        if not text.strip():
            raise BadInput("the text to embed is empty")
        return text

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        batch = Batch(data, context, self._parse)
        if not batch.items:
            return batch.answer([])
        encoded = self.tokenizer(
            batch.items, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        embeddings = F.normalize(pooled, p=2, dim=1)
        return batch.answer(
            [
                to_json({"embedding": [round(v, 7) for v in e.tolist()], "batch_size": batch.size})
                for e in embeddings
            ]
        )
