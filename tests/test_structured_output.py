"""Structured output against real servers: the llama predictor holds its output to a JSON
Schema (or to any JSON object) with llama.cpp's grammar sampler, inside the continuous batch,
through the gateway; what it cannot enforce is refused by name; TorchServe refuses it all."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictors.llama.grammar import json_grammar
from predictors.llama.model import LoadedModel
from predictors.llama.sampling import GrammarSampler
from predictors.llama.settings import default_model_path
from runtime.response_format import JsonFormat
from runtime.textgen import Sampling
from servemesh import AsyncClient, Client
from servemesh.cli import main as cli_main
from servemesh.errors import InvalidArgument
from tests.servers import MODEL, PROMPTS

TORCH_TEXT_MODEL = "smollm2-135m-torch"
ACTIVE = "servemesh_llama_active_sequences"
FIELD = "text_generation.parameters.response_format"
SCHEMA_FIELD = FIELD + ".json_schema.schema"

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}
CITIES = {
    "type": "object",
    "properties": {
        "cities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "population": {"type": "integer"},
                },
                "required": ["name", "population"],
            },
            "minItems": 2,
            "maxItems": 3,
        }
    },
    "required": ["cities"],
}
BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "author": {
            "type": "object",
            "properties": {
                "first": {"type": "string", "maxLength": 20},
                "last": {"type": "string", "maxLength": 20},
            },
            "required": ["first", "last"],
        },
        "year": {"type": "integer"},
        "in_print": {"type": "boolean"},
    },
    "required": ["title", "author", "year", "in_print"],
}
PRODUCT = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "released": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"enum": ["new", "sale", "eco"]}, "maxItems": 3},
        "discount": {"type": ["number", "null"]},
    },
    "required": ["code", "released", "tags", "discount"],
}
CASES = {
    "person": (PERSON, "Describe a person as JSON with a name, an age and a favourite color."),
    "cities": (CITIES, "List two or three big cities and their population as JSON."),
    "book": (BOOK, "Describe a famous book as JSON."),
    "product": (PRODUCT, "Give a product code, its release date and tags as JSON."),
}


def json_schema(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def generate(client: Client, streamed: bool, message: str, **options: Any) -> tuple[str, str]:
    """The text and finish reason of one generation, unary or streamed."""
    if not streamed:
        result = client.predict(MODEL, message, **options)
        return result.text, result.finish_reason
    chunks = list(client.predict_stream(MODEL, message, **options))
    return "".join(c.text for c in chunks), chunks[-1].finish_reason


PATHS = pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])


@PATHS
@pytest.mark.parametrize("case", CASES)
def test_greedy_output_is_json_valid_against_the_schema(
    client: Client, case: str, streamed: bool
) -> None:
    schema, question = CASES[case]
    text, finish = generate(
        client,
        streamed,
        question,
        max_tokens=256,
        temperature=0,
        response_format=json_schema(schema, case),
    )
    jsonschema.validate(json.loads(text), schema)
    assert finish == "eos_token", "the model ends once the JSON is complete"


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", ["person", "cities", "product"])
def test_sampled_output_is_valid_too(client: Client, case: str, seed: int) -> None:
    """At temperature 1 the model, left alone, strays from JSON; the grammar keeps every token
    it draws legal."""
    schema, question = CASES[case]
    result = client.predict(
        MODEL,
        question,
        max_tokens=256,
        temperature=1.0,
        top_k=100,
        seed=seed,
        response_format=json_schema(schema),
    )
    jsonschema.validate(json.loads(result.text), schema)
    assert result.finish_reason == "eos_token"


@PATHS
@pytest.mark.parametrize("temperature", [0, 0.9])
def test_json_object_mode_gives_one_json_object(
    client: Client, streamed: bool, temperature: float
) -> None:
    text, finish = generate(
        client,
        streamed,
        "Describe a person as JSON with a name, an age and a favourite color.",
        max_tokens=400,
        temperature=temperature,
        seed=4,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(text), dict)
    assert finish == "eos_token"


def test_free_text_and_a_text_format_are_unconstrained(client: Client) -> None:
    question = "Describe a person as JSON with a name, an age and a favourite color."
    free = client.predict(MODEL, question, max_tokens=48, temperature=0)
    text = client.predict(
        MODEL, question, max_tokens=48, temperature=0, response_format={"type": "text"}
    )
    constrained = client.predict(
        MODEL, question, max_tokens=48, temperature=0, response_format=json_schema(PERSON)
    )
    assert text.text == free.text
    assert not free.text.lstrip().startswith("{"), "the model alone does not answer in JSON"
    assert constrained.text.startswith("{")


def test_max_tokens_cuts_the_json_short_with_finish_reason_length(client: Client) -> None:
    """A documented caveat: the grammar makes every token legal, but cannot make the JSON
    end before max_tokens does."""
    schema, question = CASES["cities"]
    whole = client.predict(
        MODEL, question, max_tokens=256, temperature=0, response_format=json_schema(schema)
    )
    cut = client.predict(
        MODEL, question, max_tokens=6, temperature=0, response_format=json_schema(schema)
    )
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 6
    assert whole.text.startswith(cut.text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)


async def test_constrained_and_free_requests_share_the_continuous_batch(mesh) -> None:
    """8 requests at once, half held to a schema, half free, unary and streamed: each gives
    what it gives alone (greedy), so a grammar changes its own sequence only."""
    free = [{"prompt": p, "max_tokens": 48} for p in PROMPTS[:4]]
    constrained = [
        {"message": question, "max_tokens": 256, "response_format": json_schema(schema, case)}
        for case, (schema, question) in CASES.items()
    ]
    jobs = [job for pair in zip(free, constrained, strict=True) for job in pair]

    async def run(client: AsyncClient, i: int, job: dict[str, Any]) -> str:
        kwargs = {**job, "temperature": 0}
        message = kwargs.pop("message", None)
        if i % 4 < 2:
            return (await client.predict(MODEL, message, **kwargs)).text
        return "".join([c.text async for c in client.predict_stream(MODEL, message, **kwargs)])

    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, int(mesh.metrics.get(ACTIVE)))
            stop.wait(0.02)

    async with AsyncClient(mesh.gateway.address) as client:
        solo = [await run(client, i, job) for i, job in enumerate(jobs)]
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            together = await asyncio.gather(*(run(client, i, job) for i, job in enumerate(jobs)))
        finally:
            stop.set()
            watcher.join()
    assert together == solo
    assert peak >= 4, f"at most {peak} sequences ran at once"
    for job, text in zip(jobs, together, strict=True):
        if "response_format" in job:
            jsonschema.validate(json.loads(text), job["response_format"]["json_schema"]["schema"])
        else:
            assert not text.lstrip().startswith("{")


REFUSED = [
    ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "minimum"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"type": "string", "format": "email"}, "format"),
    ({"$ref": "https://example.com/person.json"}, "$ref"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "string", "pattern": "^(?!admin).*$"}, "(?"),
]


@PATHS
@pytest.mark.parametrize(("schema", "keyword"), REFUSED, ids=[k for _, k in REFUSED])
def test_what_cannot_be_enforced_is_refused_by_name(
    client: Client, streamed: bool, schema: dict[str, Any], keyword: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        generate(client, streamed, "Hi", max_tokens=8, response_format=json_schema(schema))
    assert caught.value.reason == "UNSUPPORTED_SCHEMA_FEATURE"
    assert caught.value.metadata["keyword"] == keyword
    assert f"{keyword!r} at " in caught.value.message
    # The predictor goes on serving.
    assert client.predict(MODEL, prompt="Hi", max_tokens=2).finish_reason


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object (a JSON Schema), not list"),
        ({"type": "string", "minLength": 3, "maxLength": 1}, "has minLength 3 above maxLength 1"),
    ],
)
def test_a_schema_that_is_not_one_is_invalid(client: Client, schema: Any, problem: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    with pytest.raises(InvalidArgument) as caught:
        client.predict(MODEL, "Hi", max_tokens=8, response_format=fmt)
    assert caught.value.reason == "INVALID_PARAMETER"
    assert problem in caught.value.message
    assert caught.value.metadata["field"] == SCHEMA_FIELD


def test_the_gateway_bounds_a_response_formats_size(client: Client) -> None:
    schema = {"type": "string", "description": "x" * 70_000}
    with pytest.raises(InvalidArgument) as caught:
        client.predict(MODEL, "Hi", max_tokens=8, response_format=json_schema(schema))
    assert caught.value.metadata["limit"] == "limits.max_response_format_bytes"


def test_the_predictor_bounds_the_schema_and_its_grammar(mesh) -> None:
    with Client(mesh.predictor.address) as predictor:
        big = {"type": "string", "description": "x" * 70_000}
        with pytest.raises(InvalidArgument) as caught:
            predictor.predict(MODEL, "Hi", max_tokens=8, response_format=json_schema(big))
        assert caught.value.metadata["limit"] == "--max-schema-bytes"
        # 20 strings of up to 1000 characters: a small schema, a grammar of about 160 KiB.
        wide = {
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "maxLength": 1000} for i in range(20)},
        }
        with pytest.raises(InvalidArgument) as caught:
            predictor.predict(MODEL, "Hi", max_tokens=8, response_format=json_schema(wide))
        assert caught.value.metadata["limit"] == "--max-grammar-bytes"
        assert predictor.predict(MODEL, prompt="Hi", max_tokens=2).finish_reason


@pytest.mark.parametrize("fmt", [{"type": "json_object"}, json_schema(PERSON)])
def test_torchserves_text_model_refuses_a_format_it_cannot_enforce(
    client: Client, fmt: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.predict(TORCH_TEXT_MODEL, "Hi", max_tokens=4, response_format=fmt)
    assert caught.value.reason == "UNSUPPORTED_PARAMETER"
    assert caught.value.metadata == {"field": FIELD, "model": TORCH_TEXT_MODEL}
    assert "does not support response_format" in caught.value.message


def test_the_cli_takes_a_schema_file(
    mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    question = CASES["person"][1]
    argv = ["--target", mesh.gateway.address, "predict", MODEL, question, "--temperature", "0"]
    assert cli_main([*argv, "--max-tokens", "128", "--json-schema", str(path)]) == 0
    jsonschema.validate(json.loads(capsys.readouterr().out), PERSON)


# --- every output the grammar allows validates: random walks through it ---

NAMES = st.sampled_from(["a", "b", "a\\b", 'q"', "é", "item", "root", "space", "integral", "part"])
PATTERNS = st.sampled_from(
    ["^[a-z]{1,4}$", "^\\d{2}-\\w$", "^(?:ab|c)+$", "^.{0,3}$", "^[^a-c]{2}$", "^[ -~]{1,3}$"]
)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-100, 100), st.text(max_size=4), st.floats(-1e6, 1e6)
)
LEAVES = st.one_of(
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 6)),
    st.sampled_from([{"type": t} for t in ("integer", "number", "boolean", "null", "object")]),
    st.builds(lambda v: {"enum": v}, st.lists(VALUES, min_size=1, max_size=4)),
    st.builds(lambda v: {"const": v}, VALUES),
    st.builds(lambda p: {"type": "string", "pattern": p}, PATTERNS),
    st.builds(lambda f: {"type": "string", "format": f}, st.sampled_from(["date", "uuid"])),
    st.just({}),
)


def _composite(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def obj(props: dict[str, Any], required: set[str], extra: dict[str, Any]) -> dict[str, Any]:
        required_here = sorted(required & set(props))
        return {"type": "object", "properties": props, "required": required_here, **extra}

    extras = st.sampled_from(
        [{}, {"additionalProperties": False}, {"additionalProperties": {"type": "integer"}}]
    )
    return st.one_of(
        st.builds(obj, st.dictionaries(NAMES, children, max_size=3), st.sets(NAMES), extras),
        st.builds(
            lambda items, low, more: {
                "type": "array",
                "items": items,
                "minItems": low,
                "maxItems": low + more,
            },
            children,
            st.integers(0, 2),
            st.integers(0, 2),
        ),
        st.builds(lambda alts: {"anyOf": alts}, st.lists(children, min_size=1, max_size=3)),
        st.builds(
            lambda it: {"type": "array", "prefixItems": it},
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(
            lambda kinds: {"type": kinds, "maxLength": 3},
            st.lists(
                st.sampled_from(["string", "null", "integer"]), min_size=2, max_size=3, unique=True
            ),
        ),
    )


SCHEMAS = st.recursive(LEAVES, _composite, max_leaves=8)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(default_model_path(), n_ctx=64, max_sequences=1, n_batch=8, n_threads=2)


def random_walk(model: LoadedModel, schema: dict[str, Any], seed: int) -> str | None:
    """What the grammar sampler writes from random logits (leaning to close strings, arrays
    and objects, and to end), or None if it has not ended after 400 tokens."""
    rng = np.random.default_rng(seed)
    closing = np.array([any(c in model.piece(t) for c in b'"]}') for t in range(model.n_vocab)])
    bias = 6.0 * closing
    bias[list(model.eog)] = 20.0
    sampler = GrammarSampler(
        Sampling(temperature=0), model.n_vocab, [], model.vocab, json_grammar(JsonFormat(schema))
    )
    text = b""
    try:
        for _ in range(400):
            token = sampler.sample_logits(rng.normal(0, 3, model.n_vocab).astype(np.float32) + bias)
            if token in model.eog:
                return text.decode()
            text += model.piece(token)
    finally:
        sampler.free()
    return None


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schema=SCHEMAS, seed=st.integers(0, 2**32 - 1))
def test_whatever_the_grammar_allows_is_valid_json_for_the_schema(
    model: LoadedModel, schema: dict[str, Any], seed: int
) -> None:
    """llama.cpp's grammar sampler, drawing from noise rather than the model, reaches the odd
    corners: property names and enum values that need escapes, names alike to the
    converter's own rules, patterns, optional properties, unions. Each output parses and
    validates, so the grammar allows nothing the schema does not."""
    text = random_walk(model, schema, seed)
    assert text is not None, "the walk leans to the end; it should get there"
    jsonschema.validate(json.loads(text), schema)
