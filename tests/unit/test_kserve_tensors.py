"""The Open Inference Protocol's conversion at the gateway, without servers: V2 tensors in and
out, batch limits, parameters, per-model translation to servemesh.v1, and the batch runner."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from gateway.kserve import parameters as params
from gateway.kserve.batch import MAX_BATCH_SIZE, check_batch_size, run_all
from gateway.kserve.infer import checked_call
from gateway.kserve.models import (
    Embedder,
    ImageClassifier,
    ModelKind,
    TextGenerator,
    kind_of_info,
    kind_of_task,
)
from gateway.kserve.tensors import (
    bytes_elements,
    check_datatype,
    element_count,
    infer_response,
    join_bytes,
    output_tensor,
    paired_inputs,
    split_bytes,
)
from kserve_v2 import grpc_predict_v2_pb2 as pb
from servemesh.errors import Internal, InvalidArgument, NotFound, Unavailable
from servemesh.v1 import generation_pb2, model_pb2
from servemesh.v1 import prediction_service_pb2 as spb

Input = pb.ModelInferRequest.InferInputTensor


def bytes_input(name: str, elements: list[bytes], shape: list[int] | None = None) -> Input:
    return Input(
        name=name,
        datatype="BYTES",
        shape=shape if shape is not None else [len(elements)],
        contents=pb.InferTensorContents(bytes_contents=elements),
    )


def raw_request(name: str, elements: list[bytes], shape: list[int] | None = None, **kw):
    tensor = Input(name=name, datatype="BYTES", shape=shape or [len(elements)])
    return pb.ModelInferRequest(inputs=[tensor], raw_input_contents=[join_bytes(elements)], **kw)


# --- BYTES framing ---


@pytest.mark.parametrize("elements", [[b"a"], [b"", b"xyz", b"\x00" * 300], [b"\xff\xfe"] * 5])
def test_bytes_round_trip_through_the_length_prefixed_form(elements: list[bytes]) -> None:
    raw = join_bytes(elements)
    assert raw[:4] == struct.pack("<I", len(elements[0])), "little-endian 4-byte length"
    assert split_bytes(raw, len(elements), "x") == elements


def test_join_bytes_matches_tritonclients_serialization() -> None:
    # tritonclient.utils.serialize_byte_tensor([b"cat", b""]) as it comes on the wire.
    assert join_bytes([b"cat", b""]) == b"\x03\x00\x00\x00cat\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x03\x00", 1, "end 2 byte\\(s\\) into the length prefix of element 0"),
        (b"\x09\x00\x00\x00abc", 1, "element 0 says it has 9 bytes, but only 3 follow"),
        (join_bytes([b"a", b"b"]), 1, "more than the 1 BYTES elements"),
        (join_bytes([b"a"]), 2, "hold 1 BYTES elements; its shape says 2"),
        (b"", 1, "hold 0 BYTES elements; its shape says 1"),
    ],
    ids=["short-prefix", "overrun", "extra-element", "missing-element", "empty"],
)
def test_malformed_raw_bytes_are_refused_with_where(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        split_bytes(raw, count, "image")
    assert caught.value.metadata == {"input": "image"}


def test_tiny_elements_past_the_shape_are_not_all_read() -> None:
    raw = join_bytes([b""] * 100_000)
    with pytest.raises(InvalidArgument, match="more than the 2 BYTES elements"):
        split_bytes(raw, 2, "text")


def test_typed_bytes_contents_are_read_and_counted() -> None:
    assert bytes_elements(bytes_input("t", [b"a", b"b"]), None) == [b"a", b"b"]
    with pytest.raises(InvalidArgument, match=r"2 elements in contents.bytes_contents; .* says 3"):
        bytes_elements(bytes_input("t", [b"a", b"b"], shape=[3]), None)


def test_raw_contents_are_paired_with_inputs_in_order() -> None:
    request = pb.ModelInferRequest(
        inputs=[Input(name="a"), Input(name="b")], raw_input_contents=[b"1", b"2"]
    )
    assert [(t.name, raw) for t, raw in paired_inputs(request)] == [("a", b"1"), ("b", b"2")]
    typed = pb.ModelInferRequest(inputs=[bytes_input("a", [b"x"])])
    assert [raw for _, raw in paired_inputs(typed)] == [None]


def test_raw_contents_must_match_the_inputs_and_exclude_typed_contents() -> None:
    short = pb.ModelInferRequest(
        inputs=[Input(name="a"), Input(name="b")], raw_input_contents=[b""]
    )
    with pytest.raises(InvalidArgument, match="2 inputs but 1 raw_input_contents"):
        paired_inputs(short)
    both = pb.ModelInferRequest(inputs=[bytes_input("a", [b"x"])], raw_input_contents=[b""])
    with pytest.raises(InvalidArgument, match="sets contents while the request carries raw"):
        paired_inputs(both)


def test_shapes_and_datatypes_are_checked() -> None:
    assert element_count(Input(name="a", shape=[2, 3])) == 6
    assert element_count(Input(name="a", shape=[])) == 1  # a scalar
    with pytest.raises(InvalidArgument, match=r"shape \[-1\]; a request's dimensions"):
        element_count(Input(name="a", shape=[-1]))
    with pytest.raises(InvalidArgument, match="is FP32; this model takes it as BYTES"):
        check_datatype(Input(name="a", datatype="FP32"), "BYTES")
    with pytest.raises(
        InvalidArgument, match=r"'FLOAT', which the Open Inference Protocol does not define"
    ):
        check_datatype(Input(name="a", datatype="FLOAT"), "BYTES")


# --- outputs ---


def test_outputs_are_raw_little_endian_rows_with_their_shape() -> None:
    scores = output_tensor("scores", "FP32", [[0.5, 0.25], [1.0, 0.0]])
    assert scores.shape == (2, 2)
    assert np.frombuffer(scores.raw, "<f4").tolist() == [0.5, 0.25, 1.0, 0.0]
    indices = output_tensor("indices", "INT64", [[281, 7]])
    assert indices.shape == (1, 2) and np.frombuffer(indices.raw, "<i8").tolist() == [281, 7]
    labels = output_tensor("labels", "BYTES", [b"tabby", b""])
    assert labels.shape == (2,) and split_bytes(labels.raw, 2, "labels") == [b"tabby", b""]
    assert output_tensor("empty", "FP32", [[], []]).shape == (2, 0)


def test_ragged_rows_are_an_internal_error() -> None:
    with pytest.raises(Internal, match="different lengths"):
        output_tensor("embedding", "FP32", [[1.0, 2.0], [1.0]])


def test_the_response_puts_each_output_beside_its_raw_contents() -> None:
    a, b = output_tensor("a", "INT64", [1, 2]), output_tensor("b", "BYTES", [b"x"])
    response = infer_response("m", "req-1", [a, b])
    assert response.model_name == "m" and response.id == "req-1"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("a", "INT64", [2]),
        ("b", "BYTES", [1]),
    ]
    assert list(response.raw_output_contents) == [a.raw, b.raw]
    assert not any(o.HasField("contents") for o in response.outputs)


# --- batch size ---


@pytest.mark.parametrize("shape", [[3], [3, 1]])
def test_a_batch_is_n_or_n_by_one(shape: list[int]) -> None:
    assert check_batch_size("image", shape) == 3


@pytest.mark.parametrize(
    ("shape", "message"), [([2, 2], "give \\[n\\] or \\[n, 1\\]"), ([0], "no elements")]
)
def test_other_shapes_are_refused(shape: list[int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_batch_size("image", shape)


def test_a_batch_over_the_limit_names_the_limit() -> None:
    with pytest.raises(InvalidArgument, match=f"at most {MAX_BATCH_SIZE} per request") as caught:
        check_batch_size("image", [MAX_BATCH_SIZE + 1])
    assert "kserve.max_batch_size" in caught.value.message
    assert caught.value.metadata["limit"] == "kserve.max_batch_size"


# --- parameters ---


def parameters(**values: object) -> dict[str, pb.InferParameter]:
    out = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = pb.InferParameter(bool_param=value)
        elif isinstance(value, int):
            out[name] = pb.InferParameter(int64_param=value)
        elif isinstance(value, float):
            out[name] = pb.InferParameter(double_param=value)
        else:
            out[name] = pb.InferParameter(string_param=str(value))
    return out


def test_parameters_are_typed_and_unknown_ones_refused() -> None:
    given = parameters(top_k=3, priority=1, timeout=5)
    assert params.model_parameters(given, ["top_k"], "m") == {"top_k": 3}
    with pytest.raises(
        InvalidArgument, match="'topk' is not one that model 'm' reads; it reads: top_k"
    ):
        params.model_parameters(parameters(topk=3), ["top_k"], "m")
    with pytest.raises(InvalidArgument, match="not a sequence"):
        params.model_parameters(parameters(sequence_id=7), ["top_k"], "m")
    with pytest.raises(InvalidArgument, match="has no value"):
        params.model_parameters({"top_k": pb.InferParameter()}, ["top_k"], "m")


def test_numbers_and_integers_are_told_apart() -> None:
    assert params.number("t", 1) == 1.0 and params.number("t", 0.5) == 0.5
    with pytest.raises(InvalidArgument, match="must be an integer"):
        params.integer("top_k", 2.5)
    with pytest.raises(InvalidArgument, match="must be an integer"):
        params.integer("top_k", True)
    with pytest.raises(InvalidArgument, match="at least 1"):
        params.integer("top_k", 0, low=1)


def test_tritonclients_timeout_shortens_the_deadline() -> None:
    assert params.deadline({}, 10.0) == 10.0
    assert params.deadline(parameters(timeout=2_000_000), 10.0) == 2.0
    assert params.deadline(parameters(timeout=2_000_000), 1.0) == 1.0
    assert params.deadline(parameters(timeout=500_000), None) == 0.5
    assert params.deadline(parameters(timeout=0), None) is None


# --- models ---


def test_kinds_come_from_the_task_option_or_the_capabilities() -> None:
    assert kind_of_task("image_classification") is ModelKind.IMAGE_CLASSIFIER
    assert kind_of_task("generic") is ModelKind.OTHER
    assert kind_of_task(None) is None
    llama = model_pb2.ModelInfo(
        capabilities=model_pb2.ModelCapabilities(
            input_kinds=[model_pb2.INPUT_KIND_PROMPT, model_pb2.INPUT_KIND_CHAT],
            output_kinds=[model_pb2.OUTPUT_KIND_TEXT],
        )
    )
    assert kind_of_info(llama) is ModelKind.TEXT_GENERATOR
    assert kind_of_info(model_pb2.ModelInfo(ready=False)) is None


def test_each_image_is_one_servemesh_request_with_top_k() -> None:
    requests = ImageClassifier().requests("clf", "r", [b"img0", b"img1"], {"top_k": 3})
    assert [r.request_id for r in requests] == ["r-0", "r-1"]
    assert [r.inference.inputs["image"].data for r in requests] == [b"img0", b"img1"]
    assert all(r.inference.inputs["top_k"].text == "3" for r in requests)
    assert ImageClassifier().requests("clf", "", [b"x"], {})[0].request_id == ""


def classification(*classes: tuple[str, float, int]) -> spb.PredictResponse:
    response = spb.PredictResponse(model="clf")
    value = response.inference.outputs["classes"].classification
    for label, score, index in classes:
        value.classes.add(label=label, score=score, index=index)
    response.inference.outputs["batch_size"].text = "2"
    return response


def test_classifications_become_scores_indices_and_labels() -> None:
    responses = [
        classification(("tabby", 0.75, 281), ("tiger cat", 0.25, 282)),
        classification(("goldfish", 0.5, 1), ("tench", 0.125, 0)),
    ]
    scores, indices, labels = ImageClassifier().output_tensors(responses)
    assert (scores.name, scores.shape) == ("scores", (2, 2))
    assert np.frombuffer(scores.raw, "<f4").tolist() == [0.75, 0.25, 0.5, 0.125]
    assert np.frombuffer(indices.raw, "<i8").tolist() == [281, 282, 1, 0]
    assert split_bytes(labels.raw, 4, "labels") == [b"tabby", b"tiger cat", b"goldfish", b"tench"]


def test_a_backend_answer_of_the_wrong_kind_is_internal() -> None:
    wrong = spb.PredictResponse(model="clf")
    wrong.inference.outputs["embedding"].vector.values.extend([1.0])
    with pytest.raises(Internal, match="without a classification named 'classes'"):
        ImageClassifier().output_tensors([wrong])


def test_texts_must_be_utf8_and_become_vectors() -> None:
    (request,) = Embedder().requests("emb", "", [b"caf\xc3\xa9"], {})
    assert request.inference.inputs["text"].text == "café"
    with pytest.raises(InvalidArgument, match="element 1 of input 'text' is not UTF-8"):
        Embedder().requests("emb", "", [b"ok", b"\xff"], {})
    response = spb.PredictResponse()
    response.inference.outputs["embedding"].vector.values.extend([0.6, 0.8])
    (embedding,) = Embedder().output_tensors([response, response])
    assert embedding.shape == (2, 2)
    assert np.frombuffer(embedding.raw, "<f4").tolist() == pytest.approx([0.6, 0.8, 0.6, 0.8])


def test_prompts_carry_the_generation_parameters() -> None:
    values = {"max_tokens": 8, "temperature": 0, "top_p": 0.9, "seed": 3, "stop": "\n"}
    (request,) = TextGenerator().requests("llm", "", [b"Name a river."], values)
    generation = request.text_generation
    assert generation.prompt == "Name a river."
    p = generation.parameters
    assert (p.max_tokens, p.temperature, round(p.top_p, 5), p.seed) == (8, 0.0, 0.9, 3)
    assert list(p.stop) == ["\n"] and p.HasField("temperature") and not p.HasField("top_k")
    (chat,) = TextGenerator().requests("llm", "", [b"Hi"], {"chat": True})
    assert chat.text_generation.chat.messages[0].role == generation_pb2.CHAT_ROLE_USER
    with pytest.raises(InvalidArgument, match="'max_tokens' is -1; it must be at least 0"):
        TextGenerator().requests("llm", "", [b"Hi"], {"max_tokens": -1})


def test_generated_texts_become_text_output_and_finish_reason() -> None:
    response = spb.PredictResponse()
    response.text_generation.text = "Nile"
    response.text_generation.finish_reason = generation_pb2.FINISH_REASON_EOS_TOKEN
    text, reason = TextGenerator().output_tensors([response])
    assert split_bytes(text.raw, 1, "t") == [b"Nile"]
    assert split_bytes(reason.raw, 1, "t") == [b"eos_token"]


# --- a whole request checked ---


def test_a_request_gives_its_elements_parameters_and_outputs() -> None:
    request = raw_request("image", [b"a", b"b"], shape=[2, 1], model_name="clf")
    request.parameters["top_k"].int64_param = 2
    request.outputs.add(name="labels")
    call = checked_call(request, ImageClassifier())
    assert (call.elements, call.values, call.outputs) == ([b"a", b"b"], {"top_k": 2}, ["labels"])
    everything = checked_call(raw_request("image", [b"a"], model_name="clf"), ImageClassifier())
    assert everything.outputs == ["scores", "indices", "labels"]


def rename_input(request: pb.ModelInferRequest) -> None:
    request.inputs[0].name = "img"


def retype_input(request: pb.ModelInferRequest) -> None:
    request.inputs[0].datatype = "UINT8"


def ask_unknown_output(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="probabilities")


def ask_classification(request: pb.ModelInferRequest) -> None:
    # tritonclient's InferRequestedOutput("scores", class_count=3)
    request.outputs.add(name="scores").parameters["classification"].int64_param = 3


def drop_inputs(request: pb.ModelInferRequest) -> None:
    request.ClearField("inputs")
    request.ClearField("raw_input_contents")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (rename_input, "'img' is not an input of model 'clf'"),
        (retype_input, "is UINT8; this model takes"),
        (ask_unknown_output, "outputs are: scores, indices, labels"),
        (ask_classification, "classification extension"),
        (drop_inputs, "no inputs"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_a_wrong_request_is_refused_saying_what_the_model_takes(change, message: str) -> None:
    request = raw_request("image", [b"a"], model_name="clf")
    change(request)
    with pytest.raises(InvalidArgument, match=message):
        checked_call(request, ImageClassifier())


def test_an_input_given_twice_is_refused() -> None:
    request = pb.ModelInferRequest(
        model_name="clf", inputs=[bytes_input("image", [b"a"]), bytes_input("image", [b"b"])]
    )
    with pytest.raises(InvalidArgument, match="given 2 times"):
        checked_call(request, ImageClassifier())


# --- running a batch ---


async def test_a_batch_runs_at_once_and_answers_in_order() -> None:
    started: list[int] = []

    async def element(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0.01 * (3 - i))  # the last ends first
        return i * 10

    results = await run_all([lambda i=i: element(i) for i in range(3)])
    assert results == [0, 10, 20] and sorted(started) == [0, 1, 2]


async def test_the_first_failure_cancels_the_rest_and_names_its_element() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def bad() -> int:
        raise NotFound("no such thing", reason="X", metadata={"k": "v"})

    calls = [lambda: slow(0), bad, lambda: slow(2)]
    with pytest.raises(NotFound) as caught:
        await asyncio.wait_for(run_all(calls), 5)
    assert caught.value.message == "element 1 of 3: no such thing"
    assert caught.value.metadata == {"k": "v", "element": "1"} and caught.value.reason == "X"
    assert sorted(cancelled) == [0, 2], "nothing runs on for an answered request"


async def test_a_lone_element_fails_as_it_is() -> None:
    async def bad() -> int:
        raise Unavailable("backend down")

    with pytest.raises(Unavailable, match=r"^UNAVAILABLE: backend down$"):
        await run_all([bad])


async def test_cancelling_the_batch_cancels_every_element() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    task = asyncio.ensure_future(run_all([lambda i=i: slow(i) for i in range(4)]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [0, 1, 2, 3]
