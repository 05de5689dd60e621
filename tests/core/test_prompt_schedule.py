"""A1111's prompt editing and alternating words read into a schedule of prompts, step by
step, as its prompt_parser reads them (its wiki's examples)."""

from __future__ import annotations

import pytest

from studio.core.prompt_schedule import at_step, changes, schedule


@pytest.mark.parametrize(
    ("prompt", "steps", "expected"),
    [
        # [from:to:when]: a fraction of the steps, or a step number
        ("a [cat:dog:0.5] on grass", 10, ((5, "a cat on grass"), (10, "a dog on grass"))),
        ("a [cat:dog:3] x", 10, ((3, "a cat x"), (10, "a dog x"))),
        ("[fancy:5] hat", 10, ((5, " hat"), (10, "fancy hat"))),  # [to:when] adds
        ("[fancy::5] hat", 10, ((5, "fancy hat"), (10, " hat"))),  # [from::when] removes
        ("[a:b:0]", 4, ((4, "b"),)),  # from the first step
        ("[a:b:99]", 4, ((4, "a"),)),  # past the last step: never
        # [a|b]: one, then the other, step after step
        ("[a|b] c", 3, ((1, "a c"), (2, "b c"), (3, "a c"))),
        ("[x|y|z]", 4, ((1, "x"), (2, "y"), (3, "z"), (4, "x"))),
        # nested, and inside emphasis (the weights stay for the encoder)
        ("a ([cat:dog:5]:1.2)", 10, ((5, "a (cat:1.2)"), (10, "a (dog:1.2)"))),
        ("[[a|b]:c:3]", 5, ((1, "a"), (2, "b"), (3, "a"), (5, "c"))),
        # what changes nothing: the prompt as it is
        ("plain (x:1.2) [y] [a:b]", 10, ((10, "plain (x:1.2) [y] [a:b]"),)),
        (r"a \[x:y:2\]", 4, ((4, r"a \[x:y:2\]"),)),  # escaped brackets
        ("[unclosed:a:2", 4, ((4, "[unclosed:a:2"),)),
    ],
)
def test_a1111s_schedules(prompt: str, steps: int, expected: tuple) -> None:
    assert schedule(prompt, steps) == expected
    assert changes(prompt) == (len(expected) > 1 or "[a:b:" in prompt)


def test_the_prompt_of_each_step() -> None:
    steps = schedule("a [cat:dog:0.5]", 4)
    assert [at_step(steps, s) for s in (1, 2, 3, 4, 5)] == [
        "a cat",
        "a cat",
        "a dog",
        "a dog",
        "a dog",
    ]
