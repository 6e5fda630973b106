"""TorchServe handler: SmolLM2-135M-Instruct text generation with transformers, streamed.

The weights are the same GGUF file the llama predictor runs, dequantized by transformers.
Input `request`: JSON {"prompt" | "messages", "max_tokens", "max_tokens_requested",
"context_length", "temperature", "top_p", "top_k", "seed", "repeat_penalty", "stop",
"stream"}, already checked by the gateway, except for what needs the tokenizer: the prompt's
length against the context. With "stream"
true, every new piece of text goes out as a TorchServe intermediate response
{"text", "token_count"}; the last response adds "finish_reason" and "usage".
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from chat_segments import render_segments
from handler_io import BadInput, main_input, to_json
from text_deltas import TextDeltas
from token_budget import ContextOverflow, fit_max_tokens
from transformers import AutoModelForCausalLM, AutoTokenizer
from ts.handler_utils.utils import send_intermediate_predict_response

log = logging.getLogger(__name__)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TextGeneration:
    """Generates for one request at a time (the model's batch size is 1)."""

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF_FILE)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, gguf_file=GGUF_FILE, dtype=torch.float32
        ).eval()
        self.initialized = True

    def _render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def _input_ids(self, request: dict[str, Any]) -> torch.Tensor:
        if request.get("messages"):
            # The template's markup with its control tokens, the messages' content as plain
            # text: a message cannot forge a turn (see chat_segments).
            ids: list[int] = []
            for text, is_content in render_segments(self._render, request["messages"]):
                encoded = self.tokenizer(
                    text, add_special_tokens=False, split_special_tokens=is_content
                )
                ids += encoded["input_ids"]
            return torch.tensor([ids])
        if request.get("prompt"):
            # A raw prompt is the caller's own full text, control tokens included.
            return self.tokenizer(request["prompt"], return_tensors="pt")["input_ids"]
        raise BadInput("give a prompt or chat messages")

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        return [self._generate(row, i, context) for i, row in enumerate(data)]

    def _generate(self, row: dict[str, Any], idx: int, context: Any) -> bytes:
        try:
            request = json.loads(main_input(row, ("request", "data", "body")))
        except json.JSONDecodeError as error:
            raise BadInput(f"the request is not JSON: {error}") from None
        ids = self._input_ids(request)
        streaming = bool(request.get("stream"))
        request_ids = {idx: context.request_ids[idx]}

        def send(text: str, token_count: int) -> None:
            if streaming:
                payload = {idx: to_json({"text": text, "token_count": token_count})}
                send_intermediate_predict_response(
                    payload, request_ids, "Intermediate Prediction success", 200, context
                )

        deltas = TextDeltas(self.tokenizer, list(request.get("stop") or []), send)
        temperature = float(request.get("temperature", 0.8))
        if request.get("seed") is not None:
            torch.manual_seed(int(request["seed"]))
        max_tokens = _fit_max_tokens(int(ids.shape[1]), request)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=float(request.get("top_p", 0.95)) if temperature > 0 else None,
                top_k=int(request.get("top_k", 40)) if temperature > 0 else None,
                repetition_penalty=float(request.get("repeat_penalty", 1.0)),
                streamer=deltas,
                stopping_criteria=[deltas],
                pad_token_id=self.tokenizer.eos_token_id,
            )
        last = int(output[0, -1])
        if deltas.stopped:
            reason = "stop_sequence"
        elif last in deltas.eos_ids:
            reason = "eos_token"
        else:
            reason = "length"
        usage = {"prompt_tokens": int(ids.shape[1]), "completion_tokens": len(deltas.ids)}
        final = {"finish_reason": reason, "usage": usage}
        if streaming:
            final |= {"text": "", "token_count": deltas.unsent_tokens}
            # Marks this response the stream's last. TorchServe sets the header itself only
            # once an intermediate response was sent; a stream with no text before its end
            # (one token, half a character) crashed its frontend and killed the worker.
            context.set_response_header(idx, "ts_stream_next", "false")
        else:
            final |= {"text": "".join(deltas.text)}
        return to_json(final)


def _fit_max_tokens(prompt_tokens: int, request: dict[str, Any]) -> int:
    """max_tokens for this prompt, with the llama predictor's rules and wording."""
    max_tokens = int(request.get("max_tokens", 256))
    context = int(request.get("context_length", 0))
    if not context:
        return max_tokens
    requested = max_tokens if request.get("max_tokens_requested") else None
    try:
        return fit_max_tokens(prompt_tokens, context, requested, max_tokens)
    except ContextOverflow as error:
        raise BadInput(str(error)) from None
