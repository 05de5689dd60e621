"""A LoRA tag is either read (its name and weight, as Python writes any float) or refused in
one sentence: a tag the studio cannot read was left in the text the encoder reads and the
LoRA silently left out."""

from __future__ import annotations

import pytest

from studio.cli import main
from studio.core.errors import BadInput
from studio.core.prompt_tags import LoraTag, split_lora_tags, unreadable_lora_tags
from studio.core.request import GenerationRequest


@pytest.mark.parametrize(
    ("prompt", "weight"),
    [
        ("x <lora:ink:1e-05>", 1e-05),  # how "{:g}" writes a small weight: LoraTag.tag() does
        ("x <lora:ink:1e+01>", 10.0),  # the largest weight drawn
        ("x <lora:ink:+0.5>", 0.5),
        ("x <lora:ink: 0.3>", 0.3),
        ("x <lora:ink:-.5:0.2>", -0.5),
    ],
)
def test_every_float_a_weight_is_written_as_is_read(prompt: str, weight: float) -> None:
    text, tags = split_lora_tags(prompt)
    assert (text, tags) == ("x", [LoraTag("ink", weight)])
    assert split_lora_tags(f"x {LoraTag('ink', weight).tag()}")[1] == [LoraTag("ink", weight)]
    assert unreadable_lora_tags(prompt) == []


@pytest.mark.parametrize(
    "tag", ["<lora:ink:abc>", "<lora:ink:nan>", "<lora:ink:inf>", "<lora:ink:te=0.5>", "<lora:>"]
)
def test_a_tag_that_cannot_be_read_is_one_sentence(tag: str) -> None:
    assert unreadable_lora_tags(f"a cat {tag}") == [tag]
    with pytest.raises(BadInput) as refused:
        GenerationRequest(prompt=f"a cat {tag}").validate()
    assert str(refused.value) == (
        f"The LoRA tag {tag} cannot be read: write it as <lora:NAME:WEIGHT>, the weight a "
        "number such as 0.8."
    )


@pytest.mark.parametrize("option", ["ink:abc", "ink:nan", ":0.5"])
def test_lora_with_a_weight_that_is_not_one_is_refused_before_any_work(
    option: str, tmp_path, capsys
) -> None:
    code = main(["generate", "a cat", "--lora", option, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        f"studio: --lora takes NAME[:WEIGHT], the weight a number such as 0.8: not '{option}'.\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tag", ["<lora:ink:1e9>", "<lora:ink:-10.5>", "<lora:ink:1:-1e6>"])
def test_a_weight_out_of_range_is_one_sentence_before_any_work(tag: str, tmp_path, capsys) -> None:
    """Far beyond ±2 the denoising goes out of range after minutes, with advice about the
    CFG scale: said before, naming the weight."""
    expected = (
        f"The LoRA tag {tag} has a weight out of range: a LoRA's weight is between -10 and 10."
    )
    with pytest.raises(BadInput, match="out of range") as refused:
        GenerationRequest(prompt=f"a cat {tag}").validate()
    assert str(refused.value) == expected
    code = main(["generate", "a cat", "--lora", "ink:-11", "--out", str(tmp_path / "x.png")])
    assert code == 2 and capsys.readouterr().err == (
        "studio: --lora: a LoRA's weight is between -10 and 10, not -11.\n"
    )
    assert list(tmp_path.iterdir()) == []
