"""A1111's <lora:NAME:WEIGHT> tags: taken out of the encoder's text, edited in place."""

from __future__ import annotations

import pytest

from studio.core.prompt_tags import (
    LoraTag,
    remove_lora_tag,
    set_lora_weight,
    split_lora_tags,
    with_lora_tags,
)


@pytest.mark.parametrize(
    ("prompt", "text", "tags"),
    [
        ("a cat", "a cat", []),
        ("a cat <lora:style:0.8>", "a cat", [LoraTag("style", 0.8)]),
        ("<lora:style> a cat", "a cat", [LoraTag("style", 1.0)]),
        (
            "masterpiece, <lora:detail slider v2:0.8>, a cat",
            "masterpiece, a cat",
            [LoraTag("detail slider v2", 0.8)],
        ),
        ("x <LORA:a:-1> <lyco:b:0.5:0.2>", "x", [LoraTag("a", -1.0), LoraTag("b", 0.5)]),
        ("x <lora:a:0.2> <lora:a:0.9>", "x", [LoraTag("a", 1.1)]),  # added up, as in A1111
        ("(red:1.2) <notatag> x", "(red:1.2) <notatag> x", []),
    ],
)
def test_tags_are_split_from_the_text(prompt: str, text: str, tags: list[LoraTag]) -> None:
    assert split_lora_tags(prompt) == (text, tags)


def test_tags_are_edited_where_they_stand() -> None:
    prompt = "a cat, <lora:x y:0.5>, blue <lora:z>"
    assert set_lora_weight(prompt, "x y", 1.25) == "a cat, <lora:x y:1.25>, blue <lora:z>"
    assert set_lora_weight(prompt, "new", 1) == prompt + " <lora:new:1>"
    assert remove_lora_tag(prompt, "x y") == "a cat, blue <lora:z>"
    assert remove_lora_tag(prompt, "z") == "a cat, <lora:x y:0.5>, blue"
    assert with_lora_tags(prompt, [LoraTag("q", 2)]) == "a cat, blue <lora:q:2>"


def test_a_lora_named_twice_is_said() -> None:
    """A1111 applies a LoRA named twice twice (the weights add up), and so does the studio;
    easily written by mistake, it is said under the prompt and by the engine."""
    from studio.core.prompt_syntax import reading_note
    from studio.core.prompt_tags import repeated_lora_note

    prompt = "a red circle <lora:heart:0.8> <lora:heart:0.5>"
    said = "The LoRA 'heart' is named 2 times: its weights add up to 1.3, as in A1111."
    assert repeated_lora_note(prompt) == said
    assert said in reading_note(None, None, prompt)
    assert repeated_lora_note("a <lora:heart:0.8> <lora:star:0.5>") == ""


def test_setting_the_weight_of_a_lora_named_twice_leaves_one_tag_at_that_weight() -> None:
    """The LoRA panel sets one weight per LoRA: the one that then runs, not one of two that
    add up to another."""
    prompt = "a red circle <lora:heart:0.8>, blue, <lora:heart:0.5> sky <lora:star:1>"
    changed = set_lora_weight(prompt, "heart", 0.9)
    assert changed == "a red circle <lora:heart:0.9>, blue, sky <lora:star:1>"
    assert split_lora_tags(changed)[1] == [LoraTag("heart", 0.9), LoraTag("star", 1.0)]


def test_what_a_caller_does_to_a_split_does_not_reach_the_next_one() -> None:
    """Splits and parses are kept for the prompts a job asks about again: a caller that
    changes the lists it got (the LoRA panel edits its tags) changes nothing for the next."""
    from studio.core.prompt_syntax import parse_weighted

    prompt = "a (red:1.2) circle <lora:ink:0.5>"
    text, tags = split_lora_tags(prompt)
    tags.append(LoraTag("other", 1.0))
    tags[0] = LoraTag("ink", 0.9)
    pieces = parse_weighted(prompt)
    pieces.clear()
    assert split_lora_tags(prompt) == (text, [LoraTag("ink", 0.5)])
    assert parse_weighted(prompt) == [("a ", 1.0), ("red", 1.2), (" circle", 1.0)]
