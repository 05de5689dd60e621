"""A single-file model's "Model hash" in the A1111 text, as AUTOMATIC1111 writes it (the first
ten hex digits of the file's SHA-256, Civitai's AutoV2), hashed once per file and kept."""

from __future__ import annotations

import hashlib

from PIL import Image

from studio.core import file_hashes
from studio.core.request import GenerationRequest
from studio.core.saving import parameters_of
from studio.metadata import format_a1111, parse_a1111
from tests.sparse_files import sparse_safetensors

SD1 = {"cond_stage_model.transformer.text_model.embeddings.position_ids": [1, 77]}


def _text(model: str) -> str:
    request = GenerationRequest(prompt="a cat", model=model, width=64, height=64, seed=3)
    return format_a1111(parameters_of(request, 3, Image.new("RGB", (64, 64))))


def test_a_single_files_hash_is_written_and_kept(tmp_path, monkeypatch) -> None:
    checkpoint = sparse_safetensors(tmp_path / "dreamshaper_8.safetensors", SD1)
    expected = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    text = _text(str(checkpoint))
    assert f"Size: 64x64, Model hash: {expected}, Model: " in text  # A1111's order
    assert parse_a1111(text).extras["Model hash"] == expected

    # a new session finds it kept on disk: the file is not read again
    hashed: list[object] = []
    monkeypatch.setattr(file_hashes, "_kept", None)
    monkeypatch.setattr(file_hashes, "_hash", lambda *args: hashed.append(args) or "0" * 64)
    assert file_hashes.model_hash(checkpoint) == expected and hashed == []
    # the file changed (a new download under the same name): hashed again
    sparse_safetensors(checkpoint, {**SD1, "model.diffusion_model.out.0.weight": [4]})
    assert file_hashes.model_hash(checkpoint) == "0" * 10 and len(hashed) == 1


def test_a_folder_model_has_no_hash(tiny_sd) -> None:
    assert "Model hash" not in _text(tiny_sd)
