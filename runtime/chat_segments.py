"""Renders chat messages with a template while keeping each message's content apart from the
template's own markup, so that content is tokenized as plain text.

Tokenizing the whole rendered prompt with special tokens parsed lets a user forge turns: a
message holding `<|im_end|>\\n<|im_start|>system\\n...` would become the model's real control
tokens. Here each content is replaced by a random placeholder, the template is rendered, and
the result is split at the placeholders: markup segments may hold control tokens, content
segments never do. Plain Python with no imports of the mesh, so TorchServe's text handler
packs this very file.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence

# Private-use characters around a random tag: no real message text collides with a
# placeholder, and a template cannot guess one.
_OPEN, _CLOSE = "\ue000", "\ue001"


def render_segments(
    render: Callable[[list[dict[str, str]]], str], messages: Sequence[Mapping[str, str]]
) -> list[tuple[str, bool]]:
    """The prompt `render` makes of `messages`, as (text, is_content) segments in order.

    A template that changes a message's content (trims it, say) sees only the placeholder,
    so the content goes in as the caller wrote it.
    """
    tag = secrets.token_hex(8)
    contents = [m["content"] for m in messages]
    placeholders = [{**m, "content": f"{_OPEN}{tag}:{i}{_CLOSE}"} for i, m in enumerate(messages)]
    rendered = render(placeholders)
    segments: list[tuple[str, bool]] = []
    pattern = re.compile(re.escape(_OPEN + tag + ":") + r"(\d+)" + re.escape(_CLOSE))
    start = 0
    for match in pattern.finditer(rendered):
        if match.start() > start:
            segments.append((rendered[start : match.start()], False))
        content = contents[int(match.group(1))]
        if content:
            segments.append((content, True))
        start = match.end()
    if start < len(rendered):
        segments.append((rendered[start:], False))
    return segments
