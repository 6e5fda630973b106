"""The gateway's OpenAI-compatible HTTP door, called with OpenAI's own Python package (sync and
async, streaming, embeddings, errors), with httpx2 where a test needs the raw wire, and with
curl -N: the same routing, limits, deadlines and cancellation as the gRPC door."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import shutil
import struct
import subprocess
import time

import httpx2
import jsonschema
import openai
import pydantic
import pytest

from servemesh import Client
from tests.servers import MODEL, wait_for
from tests.test_cancellation import CANCELLED, COUNTING, TOKENS

EMBEDDER = "all-minilm-l6-v2"
QUESTION = [{"role": "user", "content": "Name three rivers in Europe."}]


@pytest.fixture(scope="module")
def base_url(mesh) -> str:
    return f"http://127.0.0.1:{mesh.gateway.http_port}/v1"


@pytest.fixture(scope="module")
def oai(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def test_models_lists_every_model_of_the_mesh(oai: openai.OpenAI, client: Client) -> None:
    listed = {m.id: m.owned_by for m in oai.models.list()}
    assert listed == {m.name: m.backend for m in client.list_models()}
    assert oai.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_chat_completion_is_the_same_answer_as_grpc(oai: openai.OpenAI, client: Client) -> None:
    answer = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0
    )
    native = client.predict(MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == native.text and native.text
    assert choice.finish_reason == "length"
    assert answer.model == MODEL and answer.object == "chat.completion"
    assert answer.usage.completion_tokens == 24
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 24


def test_streamed_chat_ends_with_finish_reason_usage_and_done(oai: openai.OpenAI) -> None:
    whole = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=20, temperature=0
    )
    chunks = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_completions_continue_a_raw_prompt(oai: openai.OpenAI, client: Client) -> None:
    answer = oai.completions.create(model=MODEL, prompt="The capital of France is", temperature=0)
    native = client.predict(MODEL, prompt="The capital of France is", max_tokens=16, temperature=0)
    assert answer.choices[0].text == native.text  # OpenAI's default max_tokens is 16
    assert answer.usage.completion_tokens == 16
    streamed = oai.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, stream=True, max_tokens=16
    )
    assert "".join(c.choices[0].text for c in streamed) == native.text


def test_draft_tokens_is_taken_as_an_extension(oai: openai.OpenAI, mesh) -> None:
    """The openai package passes it in extra_body; drafts are verified and the answer is the
    one without them."""
    prompt = "Repeat: one two three four five six. Repeat: one two three four five six. Repeat:"
    plain = oai.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=24)
    before = mesh.metrics.settled().get("servemesh_llama_draft_tokens_total", 0)
    drafted = oai.completions.create(
        model=MODEL, prompt=prompt, temperature=0, max_tokens=24, extra_body={"draft_tokens": 8}
    )
    assert drafted.choices[0].text == plain.choices[0].text
    assert mesh.metrics.settled()["servemesh_llama_draft_tokens_total"] > before


async def test_async_client_streams_concurrently(base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as oai:

        async def one(prompt: str) -> str:
            stream = await oai.completions.create(
                model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stream=True
            )
            return "".join([c.choices[0].text async for c in stream])

        prompts = ["1, 2, 3,", "The sky is", "Once upon a time"]
        together = await asyncio.gather(*(one(p) for p in prompts))
        alone = [await one(p) for p in prompts]
    assert together == alone and all(together)


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_embeddings_match_the_native_vectors(
    oai: openai.OpenAI, client: Client, encoding: str | None
) -> None:
    """The package asks for base64 by itself and decodes it (None); asked for base64 by the
    caller, it hands over the string."""
    texts = ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Stock prices fell."]
    options = {"encoding_format": encoding} if encoding else {}
    answer = oai.embeddings.create(model=EMBEDDER, input=texts, **options)
    assert [d.index for d in answer.data] == [0, 1, 2]
    vectors = [d.embedding for d in answer.data]
    if encoding == "base64":
        vectors = [list(struct.unpack("<384f", base64.b64decode(v))) for v in vectors]
    assert all(len(v) == 384 for v in vectors)
    native = client.predict(EMBEDDER, inputs={"text": texts[0]}).outputs["embedding"]
    assert max(abs(a - b) for a, b in zip(vectors[0], native, strict=True)) < 1e-6
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-4)
    cosine = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_errors_are_openai_errors_with_the_field_at_fault(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert caught.value.code == "model_not_found" and MODEL in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=QUESTION, temperature=7)
    assert caught.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=QUESTION, n=3)
    assert caught.value.param == "n" and caught.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as caught:  # the model's own limit, checked by it
        oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10**6)
    assert "max_tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model=MODEL, input="not an embedder")
    with pytest.raises(openai.BadRequestError) as caught:  # the gateway's own [limits]
        oai.chat.completions.create(model=MODEL, messages=QUESTION, stop=["x"] * 9)
    assert "limits.max_stop_sequences" in caught.value.message
    # and the door still serves
    assert oai.completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices


def test_malformed_and_oversized_bodies(base_url: str) -> None:
    with httpx2.Client(base_url=base_url) as http:
        bad = http.post("/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        listed = http.post("/completions", json=["a", "list"])
        assert listed.status_code == 400
        huge = http.post("/completions", content=b"x" * (17 * 1024 * 1024))
        assert huge.status_code == 413
        assert "limits.max_request_bytes" in huge.json()["error"]["message"]
        unknown = http.get("/engines")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_endpoint"
        timeout = http.post(
            "/completions",
            json={"model": MODEL, "prompt": "x"},
            headers={"x-servemesh-timeout": "-1"},
        )
        assert (
            timeout.status_code == 400 and timeout.json()["error"]["param"] == "x-servemesh-timeout"
        )


def test_curl_streams_server_sent_events(base_url: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = {"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0, "stream": True}
    run = subprocess.run(
        [
            curl,
            "-sN",
            f"{base_url}/completions",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [line.removeprefix("data: ") for line in run.stdout.splitlines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks).strip()


def test_a_client_that_disconnects_mid_stream_stops_the_generation(mesh, base_url: str) -> None:
    before = mesh.metrics.settled()
    body = {
        "model": MODEL,
        "prompt": COUNTING,
        "max_tokens": 1000,
        "temperature": 0,
        "stream": True,
    }
    with (
        httpx2.Client(base_url=base_url, timeout=30) as http,
        http.stream("POST", "/completions", json=body) as response,
    ):
        assert response.status_code == 200
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events >= 5:
                break
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1
    assert after[TOKENS] - before[TOKENS] < 100, "the generation ran on after the disconnect"


def test_a_unary_client_that_goes_away_stops_the_generation(mesh, base_url: str) -> None:
    before = mesh.metrics.settled()
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": 1000, "temperature": 0}
    with httpx2.Client(base_url=base_url, timeout=0.8) as http, pytest.raises(httpx2.ReadTimeout):
        http.post("/completions", json=body)
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1
    assert after[TOKENS] - before[TOKENS] < 150


@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
def test_a_deadline_header_gives_504_and_stops_the_backend(
    mesh, base_url: str, streamed: bool
) -> None:
    before = mesh.metrics.settled()
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": 1000, "temperature": 0}
    started = time.monotonic()
    with httpx2.Client(base_url=base_url, timeout=30) as http:
        response = http.post(
            "/completions",
            json={**body, "stream": streamed},
            headers={"x-servemesh-timeout": "0.5"},
        )
    assert time.monotonic() - started < 3
    if streamed:  # the stream had begun: it ends with an error event, not in silence
        last = response.text.strip().splitlines()[-1]
        assert json.loads(last.removeprefix("data: "))["error"]["code"] == "deadline_exceeded"
    else:
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1


def test_the_openai_package_timeout_is_the_deadline(mesh, oai: openai.OpenAI) -> None:
    before = mesh.metrics.settled()
    # Whichever gives up first: the client (its timeout) or the gateway (504, the same deadline).
    with pytest.raises((openai.APITimeoutError, openai.InternalServerError)):
        oai.completions.create(
            model=MODEL, prompt=COUNTING, max_tokens=1000, temperature=0, timeout=0.6
        )
    wait_for(
        lambda: mesh.metrics.get(CANCELLED) == before.get(CANCELLED, 0) + 1,
        5,
        "the predictor cancelled the generation",
    )


def test_calls_are_counted_under_the_openai_protocol(mesh, oai: openai.OpenAI) -> None:
    oai.completions.create(model=MODEL, prompt="Hi", max_tokens=1)
    seen = mesh.gateway.metrics.read()
    label = (
        f"servemesh_gateway_calls_total{{code=OK,method=completions,model={MODEL},protocol=openai}}"
    )
    assert seen.get(label, 0) >= 1


CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population_millions": {"type": "integer"},
    },
    "required": ["city", "country", "population_millions"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
def test_response_format_json_schema_gives_valid_json(oai: openai.OpenAI, streamed: bool) -> None:
    options = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Describe Paris as JSON."}],
        "max_tokens": 120,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": CITY, "strict": True},
        },
    }
    if streamed:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in oai.chat.completions.create(**options, stream=True)
        )
    else:
        text = oai.chat.completions.create(**options).choices[0].message.content
    jsonschema.validate(json.loads(text), CITY)


def test_the_openai_package_parses_into_a_pydantic_model(oai: openai.OpenAI) -> None:
    """`parse` sends the model's strict JSON schema, as pydantic writes it, and reads the
    answer back into the model."""

    class City(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=40)
        country: str = pydantic.Field(max_length=40)

    answer = oai.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a city in Italy."}],
        response_format=City,
        max_tokens=80,
        temperature=0,
    )
    assert isinstance(answer.choices[0].message.parsed, City)


def test_a_schema_feature_the_grammar_cannot_enforce_is_refused_by_name(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        )
    assert caught.value.code == "unsupported_schema_feature" and "minimum" in caught.value.message
