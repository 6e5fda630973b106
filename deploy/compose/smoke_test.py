"""Smoke tests of a running compose stack through the SDK (`make compose-test` runs them).

Every model answers a Predict, the llama model streams, health names mean what they say, and
the gateway refuses a call without the key. SERVEMESH_COMPOSE_TARGET and
SERVEMESH_COMPOSE_API_KEY_FILE say where the stack is (defaults: `make compose-up`'s).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from servemesh import Client
from servemesh.errors import Unauthenticated

ROOT = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("SERVEMESH_COMPOSE_TARGET", "127.0.0.1:50151")
KEY_FILE = Path(
    os.environ.get("SERVEMESH_COMPOSE_API_KEY_FILE", ROOT / "build" / "compose" / "api-key")
)
LLM = "smollm2-135m-instruct"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def client() -> Client:
    with Client(TARGET, api_key=KEY_FILE.read_text().strip(), timeout=120) as c:
        yield c


def test_every_backend_serves(client: Client) -> None:
    assert client.health() == "SERVING"
    assert client.health("all-backends") == "SERVING"
    for name in ("backend/llama", "backend/torchserve", f"model/{LLM}"):
        assert client.health(name) == "SERVING", name


def test_every_model_is_listed(client: Client) -> None:
    names = {m.name for m in client.list_models()}
    assert names == {LLM, "smollm2-135m-torch", "efficientnet-lite0", "all-minilm-l6-v2"}


def test_llama_predicts_and_streams(client: Client) -> None:
    unary = client.predict(LLM, "Name one colour.", max_tokens=8, temperature=0)
    assert unary.text and unary.usage.completion_tokens > 0
    chunks = list(client.predict_stream(LLM, "Name one colour.", max_tokens=8, temperature=0))
    assert "".join(c.text for c in chunks) == unary.text
    assert chunks[-1].finish_reason


def test_torch_llm_streams(client: Client) -> None:
    chunks = list(client.predict_stream("smollm2-135m-torch", "Say hi.", max_tokens=6))
    assert "".join(c.text for c in chunks) and chunks[-1].finish_reason


def test_classifier_sees_a_cat(client: Client) -> None:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG")  # a public-domain photo of a cat
    result = client.predict("efficientnet-lite0", inputs={"image": buffer.getvalue()})
    assert result.outputs["classes"][0].index in CAT_CLASSES


def test_embedder_ranks_by_meaning(client: Client) -> None:
    def embed(text: str) -> np.ndarray:
        vector = np.asarray(
            client.predict("all-minilm-l6-v2", inputs={"text": text}).outputs["embedding"]
        )
        return vector / np.linalg.norm(vector)

    cat, kitten, tax = embed("a cat sleeps"), embed("a kitten naps"), embed("income tax law")
    assert cat.shape == (384,) and cat @ kitten > cat @ tax


def test_a_call_without_the_key_is_refused() -> None:
    with Client(TARGET) as anonymous, pytest.raises(Unauthenticated):
        anonymous.predict(LLM, "hi", max_tokens=1)
