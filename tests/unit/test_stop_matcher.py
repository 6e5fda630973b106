"""Stop sequences split over any number of streamed pieces."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_empty_stop_sequences_are_ignored() -> None:
    matcher = StopMatcher(["", "END"])
    assert matcher.feed("a") == ("a", False)
    assert matcher.feed("bEN") == ("b", False)
    assert matcher.feed("D") == ("", True)


def test_flush_gives_the_held_text_once() -> None:
    matcher = StopMatcher(["<END>"])
    assert matcher.feed("a <EN") == ("a ", False)
    assert matcher.flush() == "<EN"
    assert matcher.flush() == ""
    assert matcher.feed("x") == ("x", False)


def whole_text(stops: list[str], text: str) -> tuple[str, bool]:
    """The answer for the text in one piece: up to the stop sequence that ends first (of
    those ending together, the longest), if any."""
    found = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    return (text[: min(found)[1]], True) if found else (text, False)


# Few letters, so stop sequences and their beginnings turn up in the text often.
LETTERS = st.text(alphabet="ab\n<é", max_size=40)
# One stop inside another included: with "abcd" and "c" the "c" ends first, in one piece or
# in many.
STOPS = st.lists(st.text(alphabet="ab\n<é", min_size=1, max_size=4), max_size=3)


@st.composite
def split(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(LETTERS)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    return text, [text[i:j] for i, j in itertools.pairwise(bounds)]


@given(stops=STOPS, pieces=split())
def test_any_split_of_the_text_gives_the_whole_texts_answer(
    stops: list[str], pieces: tuple[str, list[str]]
) -> None:
    text, parts = pieces
    assert run(stops, parts) == whole_text(stops, text)


@given(stops=STOPS, pieces=split())
def test_what_is_sent_is_never_taken_back(stops: list[str], pieces: tuple[str, list[str]]) -> None:
    """Every piece sent is part of the final answer: nothing of a stop sequence leaks."""
    text, parts = pieces
    answer, _ = whole_text(stops, text)
    matcher, sent = StopMatcher(stops), ""
    for part in parts:
        out, stopped = matcher.feed(part)
        sent += out
        assert answer.startswith(sent)
        if stopped:
            break


@pytest.mark.parametrize("pieces", [["abcd"], ["abc", "d"], ["ab", "cd"], list("abcd")])
def test_a_stop_inside_another_ends_where_it_ends_first(pieces: list[str]) -> None:
    assert run(["abcd", "c"], pieces) == ("ab", True)
