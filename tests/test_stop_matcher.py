"""Stop sequences split over any number of streamed pieces."""

from __future__ import annotations

import pytest

from runtime.stop_sequences import StopMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    sent = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        sent.append(text)
        if stopped:
            return "".join(sent), True
    return "".join(sent) + matcher.flush(), False


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        (["END"], ["hello ", "world"], ("hello world", False)),
        (["END"], ["hello E", "N", "D more"], ("hello ", True)),
        (["END"], ["hello EN", "X"], ("hello ENX", False)),
        (["END"], ["ENDING"], ("", True)),
        (["\n\n", "###"], ["a\n", "b##", "#c"], ("a\nb", True)),
        (["ab", "b"], ["xab"], ("x", True)),
        (["aab"], ["a", "a", "a", "b"], ("a", True)),
        ([], ["anything"], ("anything", False)),
        (["END"], ["tail E"], ("tail E", False)),
    ],
)
def test_stop_matcher(stops, pieces, expected) -> None:
    assert run(stops, pieces) == expected


def test_nothing_that_could_start_a_stop_sequence_is_sent_early() -> None:
    matcher = StopMatcher(["<END>"])
    assert matcher.feed("text <E") == ("text ", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("D>") == ("", True)
