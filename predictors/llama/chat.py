"""Renders chat messages into a prompt with the chat template stored in the GGUF file."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from runtime.chat_segments import render_segments

TEMPLATE_KEY = "tokenizer.chat_template"


class ChatTemplate:
    """The model's own Jinja chat template, as llama.cpp's metadata carries it."""

    def __init__(self, metadata: Mapping[str, str], bos_token: str, eos_token: str) -> None:
        template = metadata.get(TEMPLATE_KEY)
        if not template:
            raise ValueError(f"the model has no {TEMPLATE_KEY}; it cannot take chat messages")
        self._formatter = Jinja2ChatFormatter(
            template=template, bos_token=bos_token, eos_token=eos_token
        )

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for `messages`, ending where the assistant's answer begins."""
        return self._formatter(messages=list(messages)).prompt

    def segments(self, messages: Sequence[Mapping[str, str]]) -> list[tuple[str, bool]]:
        """The prompt as (text, is_content) pieces: the template's markup, to be tokenized
        with control tokens, and the messages' content, to be tokenized as plain text."""
        return render_segments(self.render, messages)


def tokenize_segments(
    segments: Sequence[tuple[str, bool]], tokenize: Callable[..., list[int]]
) -> list[int]:
    """A prompt's tokens from its segments: markup with control tokens parsed, content as
    plain text; `tokenize(text, special=..., add_bos=...)` is the model's tokenizer."""
    tokens: list[int] = []
    for i, (text, is_content) in enumerate(segments):
        tokens += tokenize(text, special=not is_content, add_bos=i == 0)
    return tokens
