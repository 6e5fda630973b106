"""One request as its trace and logs see it inside the predictor: the ids its log lines carry,
and when its generation reached each stage, recorded on the batching thread and turned into
spans (queue, prefill, decode) on the event loop once the generation is over."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.tracing import Hop


@dataclass(slots=True, eq=False)
class RequestTrace:
    """Times are time.time_ns(), 0 for a stage not reached. The batching thread writes them
    (it has no context variables of the call, hence `log_ids` for its `extra=`); the event
    loop reads them after the generation's last event, which the thread sent after writing."""

    log_ids: dict[str, str] = field(default_factory=dict)
    submitted: int = 0  # handed to the batching loop
    admitted: int = 0  # left the queue for a sequence slot (or failed, or was cancelled)
    first_token: int = 0  # the prompt is prefilled and the first token sampled
    finished: int = 0  # the last token is sampled
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cells the slot kept from its last request
    generated_tokens: int = 0


def record_stages(hop: Hop, trace: RequestTrace, now: int) -> None:
    """The request's stages as child spans of its span: each stage reached, ending where the
    next began, or at `now` for the one it was in when it ended (an error, a cancel)."""
    if not trace.submitted:
        return
    admitted = trace.admitted or now
    hop.child("queue", trace.submitted, admitted, {})
    if not trace.admitted:
        return
    first_token = trace.first_token or now
    hop.child(
        "prefill",
        admitted,
        first_token,
        {
            "gen_ai.usage.input_tokens": trace.prompt_tokens,
            "servemesh.cached_prompt_tokens": trace.cached_tokens,
        },
    )
    if trace.first_token:
        end = trace.finished or now
        hop.child(
            "decode", first_token, end, {"gen_ai.usage.output_tokens": trace.generated_tokens}
        )
