"""A1111's alternating words ([a|b]) and prompt editing ([from:to:when]) change the prompt
from step to step, which the studio runs for the CLIP families (tests/engine/
test_prompt_editing.py) but not for the others: there it is told so, under the prompt in the
window and on the command line."""

from __future__ import annotations

import pytest

from studio.cli import main
from studio.core import families
from studio.core.prompt_syntax import reading_note, unrun_syntax_note


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ("a [red|blue] circle", "[red|blue] is A1111's alternating words"),
        ("a [cat:dog:0.5] photo", "[cat:dog:0.5] is A1111's prompt editing"),
        ("[cat::0.3] x", "[cat::0.3] is A1111's prompt editing"),
        ("[cat:10] x", "[cat:10] is A1111's prompt editing"),
        ("[ (cat:1.2) : dog : .4 ]", "[ (cat:1.2) : dog : .4 ] is A1111's prompt editing"),
        ("(a:1.2) [b] [a:b]", ""),  # emphasis, and a colon with no step: plain brackets
        (r"\[a|b\] x", ""),  # escaped: the characters themselves
        ("x <lora:style:0.5>", ""),  # a LoRA tag is not prompt editing
    ],
)
def test_unrun_syntax_is_named(prompt: str, said: str) -> None:
    note = unrun_syntax_note(prompt)
    assert (said in note) if said else note == ""
    if said:
        assert note.endswith("which this model does not run: the text inside is read as it "
                             "stands, as any [...] is.")  # fmt: skip
        assert said in reading_note(None, None, "x", prompt)  # the window's line: any family
        assert "The negative prompt's" in reading_note(None, None, "x", prompt)
        flux, sdxl = families.by_name("flux-dev"), families.by_name("sdxl")
        assert said in reading_note(flux, None, prompt)  # a family that does not run it
        assert reading_note(sdxl, None, prompt, prompt) == ""  # SDXL runs both


def test_the_command_line_says_it_for_a_family_that_does_not_run_it(tmp_path, capsys) -> None:
    """Flux reads plain text: said, by its name, and in the words of its weights note (the
    two contradicted each other: "read as it stands" beside "[…] are ignored"). (SD 1.x runs
    it: tests/engine/test_prompt_editing.py.)"""
    from tests.engine.tiny_families import build

    flux = str(build("flux", tmp_path / "flux"))
    args = ["generate", "a [red|blue] circle", "--model", flux, "--steps", "1"]
    code = main([*args, "--width", "64", "--height", "64", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert (
        code == 0
        and (
            "The prompt's [red|blue] is A1111's alternating words, which Flux.1 dev does not "
            "run: its words are read as plain text."
        )
        in err.splitlines()
    )
