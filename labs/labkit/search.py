"""Semantic search in small: a labelled collection, cosine ranking, recall@k, and a keyword
baseline to compare with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servemesh import Client

COLLECTION = Path(__file__).with_name("collection.tsv")


@dataclass(frozen=True)
class Collection:
    """Documents (id, text) and queries (text, id of the relevant document)."""

    documents: tuple[tuple[str, str], ...]
    queries: tuple[tuple[str, str], ...]

    def relevant_indices(self) -> list[int]:
        ids = [doc_id for doc_id, _ in self.documents]
        return [ids.index(doc_id) for _, doc_id in self.queries]


def load_collection(path: Path = COLLECTION) -> Collection:
    documents, queries = [], []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, item_id, text = line.split("\t")
        if kind == "doc":
            documents.append((item_id, text))
        else:
            queries.append((text, item_id))
    return Collection(tuple(documents), tuple(queries))


_STOP = frozenset(("a", "an", "and", "the", "of", "to", "in", "on", "for", "is", "it", "at"))


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def keyword_scores(query: str, documents: Sequence[str]) -> np.ndarray:
    """The baseline: the share of words two texts have in common (Jaccard), no meaning."""
    q = words(query)
    return np.array([len(q & words(d)) / (len(q | words(d)) or 1) for d in documents])


def cosine_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """[n_queries, n_documents] cosine similarities of two sets of vectors."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    return q @ d.T


def recall_at_k(scores: np.ndarray, relevant: Sequence[int], k: int) -> float:
    """The share of queries whose relevant document is among the k best scored (one relevant
    document a query, so this is also hit rate at k)."""
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([rel in row for rel, row in zip(relevant, top, strict=True)]))


def embed(client: Client, model: str, texts: Sequence[str]) -> np.ndarray:
    """[n, dim] embeddings from a mesh model that takes `text` and answers `embedding`."""
    vectors = [client.predict(model, inputs={"text": t}).outputs["embedding"] for t in texts]
    return np.array(vectors, dtype=np.float64)
