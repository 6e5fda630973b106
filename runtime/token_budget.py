"""How many tokens a generation may produce in the context its prompt leaves.

Plain Python with no imports of the mesh, so TorchServe's text handler packs this very file
and refuses with the llama predictor's rules and words.
"""

from __future__ import annotations


class ContextOverflow(ValueError):
    """The prompt, or the prompt and the requested max_tokens, do not fit the context;
    `reason` is the ErrorInfo reason a server reports."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def fit_max_tokens(
    prompt_tokens: int, context_length: int, requested: int | None, default: int
) -> int:
    """max_tokens for this prompt: as `requested`, or `default` cut to the room the context
    leaves. ContextOverflow when the prompt leaves no room or the request does not fit."""
    room = context_length - prompt_tokens
    if room < 1:
        raise ContextOverflow(
            f"the prompt has {prompt_tokens} tokens; the context holds {context_length}, so it "
            f"must have at most {context_length - 1} to leave room for an answer",
            "PROMPT_TOO_LONG",
        )
    if requested is None:
        return min(default, room)
    if requested > room:
        raise ContextOverflow(
            f"the prompt has {prompt_tokens} tokens and max_tokens is {requested}; together "
            f"they must fit the context of {context_length} tokens (max_tokens {room} at most)",
            "CONTEXT_OVERFLOW",
        )
    return requested
