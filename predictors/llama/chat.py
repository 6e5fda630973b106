"""Renders chat messages into a prompt with the chat template stored in the GGUF file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

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
