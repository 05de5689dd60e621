"""Which prompt words a model knows (studio-tiny's card lists them)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.vocabulary import Vocabulary, from_card, of_model
from studio.tiny.scenes import caption, sample_scene


def test_every_word_studio_tiny_was_trained_on_is_known() -> None:
    vocabulary = of_model("studio-tiny")
    assert vocabulary is not None
    rng = random.Random(0)
    for _ in range(500):
        scene = sample_scene(rng)
        for full in (False, True):
            text = caption(scene, rng, full)
            assert vocabulary.unknown(text) == [], text


def test_unknown_words_are_found_where_they_are_and_named_once() -> None:
    vocabulary = of_model("studio-tiny")
    text = "A photo of a Cat, (red:1.2) circle <lora:cat_style:0.8> cat's"
    spans = vocabulary.unknown(text)
    assert [s.word for s in spans] == ["photo", "of", "Cat", "cat's"]
    assert all(text[s.start : s.end] == s.word for s in spans)
    note = vocabulary.note(text, "blurry")
    assert note == "studio-tiny does not know 'photo', 'of', 'cat', 'cat's', 'blurry': ignored."
    assert vocabulary.note("a red circle on a blue background", "") == ""
    many = Vocabulary("m", frozenset()).note(" ".join(f"w{chr(97 + i)}x" for i in range(12)))
    assert many.endswith("and 4 more: ignored.")


def test_only_models_whose_card_lists_words_have_a_vocabulary(tmp_path: Path) -> None:
    assert of_model("stabilityai/sd-turbo") is None  # a hub id: nothing is looked up
    assert of_model("no such model") is None
    assert from_card("m", {"vocabulary": ["red"]}) is None  # not the card's shape
    assert from_card("m", {}) is None
    folder = tmp_path / "my-tiny"
    shutil.copytree(EMBEDDED_MODELS_DIR / "studio-tiny", folder, ignore=_weights)
    card = json.loads((folder / "studio.json").read_text())
    card["vocabulary"] = {"things": ["cat", "dog"], "synonyms": {"kitten": "cat"}}
    (folder / "studio.json").write_text(json.dumps(card))
    mine = of_model(str(folder))
    assert mine is not None and mine.model == "my-tiny"
    assert [s.word for s in mine.unknown("a kitten and a cat")] == ["a", "and", "a"]


def _weights(_folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n.endswith(".safetensors")]
