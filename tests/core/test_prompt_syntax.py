"""The prompt syntax against A1111's documented cases (the doctest table of its
`parse_prompt_attention` and the wiki's "Attention/emphasis" section)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core import families
from studio.core.prompt_syntax import (
    BREAK,
    has_weights,
    parse_weighted,
    plain_text,
    reading_note,
    split_breaks,
)

CASES = [
    # A1111's own doctest table
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.1 * 1.1 * 1.3),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.1**4),
            (".", 1.1),
        ],
    ),
    # the wiki's forms
    ("a ((word)) b", [("a ", 1.0), ("word", 1.1 * 1.1), (" b", 1.0)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("( word : 1.3 )", [(" word ", 1.3)]),
    ("(word:0.5) and [word]", [("word", 0.5), (" and ", 1.0), ("word", 1 / 1.1)]),
    ("[[word]]", [("word", 1 / 1.1 / 1.1)]),
    ("(a [b] c)", [("a ", 1.1), ("b", 1.1 / 1.1), (" c", 1.1)]),
    ("((a:1.5) b)", [("a", 1.5 * 1.1), (" b", 1.1)]),
    ("(word:-1)", [("word", -1.0)]),
    # escapes: the brackets themselves, a backslash, a lone backslash dropped
    ("\\(word\\)", [("(word)", 1.0)]),
    ("\\[x\\]", [("[x]", 1.0)]),
    ("a \\\\ b", [("a \\ b", 1.0)]),
    ("(a \\(b\\))", [("a (b)", 1.1)]),
    # unbalanced: a closing bracket never opened is literal; an open one weights the rest
    ("a) b", [("a) b", 1.0)]),
    ("a] b", [("a] b", 1.0)]),
    ("[unbalanced", [("unbalanced", 1 / 1.1)]),
    ("a (b [c", [("a ", 1.0), ("b ", 1.1), ("c", 1.1 / 1.1)]),
    ("word:1.2)", [("word:1.2)", 1.0)]),
    # a colon that is not a weight is a character
    ("(a:b)", [("a:b", 1.1)]),
    ("time: 12", [("time: 12", 1.0)]),
    # empty
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
    # BREAK: a word of its own, in capitals; spaces around it go (inside brackets too,
    # where A1111 weights the marker and encodes the word "BREAK" instead)
    ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("a, (b BREAK c)", [("a, ", 1.0), ("b", 1.1), BREAK, ("c", 1.1)]),
    ("BREAKFAST break", [("BREAKFAST break", 1.0)]),
    # LoRA tags are taken out before anything else
    ("a cat <lora:ink:0.8>, (red:1.2)", [("a cat , ", 1.0), ("red", 1.2)]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_a1111_cases(text: str, expected: list[tuple[str, float]]) -> None:
    parsed = parse_weighted(text)
    assert [t for t, _ in parsed] == [t for t, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_break_splits_into_parts() -> None:
    parts = split_breaks(parse_weighted("a BREAK (b) BREAK c"))
    assert parts == [[("a", 1.0)], [("b", 1.1)], [("c", 1.0)]]
    assert split_breaks(parse_weighted("plain")) == [[("plain", 1.0)]]


def test_plain_text_for_encoders_without_weights() -> None:
    assert plain_text("a (red:1.3) [ball] BREAK on ((grass)) <lora:x:1>") == "a red ball on grass"
    assert plain_text("\\(literal\\)") == "(literal)"
    assert not has_weights("a red ball <lora:x:1>, \\(not weighted\\)")
    assert has_weights("a (red) ball") and has_weights("a BREAK b")


def chroma_like(folder: Path) -> Path:
    """A folder the studio takes for a Chroma model, with a word-level tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ChromaPipeline"}))
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "red": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer" / "tokenizer.json"))
    return folder


def test_the_window_says_what_a_plain_text_encoder_will_not_read(tmp_path: Path) -> None:
    folder = chroma_like(tmp_path / "chroma")
    chroma = families.by_name("chroma")
    assert reading_note(chroma, folder, "a red ball") == ""
    assert reading_note(chroma, folder, "a (red:1.2)") == (
        "Chroma reads no weights: the prompt's (…), […] and BREAK are ignored."
    )
    long = reading_note(chroma, folder, "red " * 600, "[blurry]").splitlines()
    assert long == [
        "The prompt is 600 tokens; Chroma reads 512: the rest is cut.",
        "Chroma reads no weights: the negative prompt's (…), […] and BREAK are ignored.",
    ]
    # the CLIP families read long prompts in chunks and weights: nothing to say
    assert reading_note(families.by_name("sdxl"), folder, "(red:1.2) " * 200) == ""
    assert reading_note(None, None, "(red)") == ""


def test_break_is_not_a_word_the_embedded_model_lacks() -> None:
    from studio.core import vocabulary

    words = vocabulary.of_model("studio-tiny")
    assert words is not None
    assert words.note("a (red:1.2) circle BREAK [blue] square") == ""
    assert "'break'" in words.note("a red circle, break")  # the word itself is still unknown
