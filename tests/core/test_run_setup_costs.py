"""What every run does before its steps costs little: a single file's family is read from its
header once, and again when the file changes (a large checkpoint's header takes
milliseconds); a request replaced by its own values is not copied."""

from __future__ import annotations

import os

from studio.core import catalog, model_files
from tests.sparse_files import sparse_safetensors

SD1 = {"cond_stage_model.transformer.text_model.embeddings.position_ids": [1, 77]}
SDXL = {"conditioner.embedders.1.model.ln_final.weight": [8]}


def test_a_files_family_is_read_again_only_when_it_changes(tmp_path, monkeypatch) -> None:
    reads: list[str] = []
    header = model_files.safetensors_header

    def counted(path, *args, **kwargs):  # noqa: ANN001, ANN202
        reads.append(os.path.basename(path))
        return header(path, *args, **kwargs)

    monkeypatch.setattr(model_files, "safetensors_header", counted)
    checkpoint = sparse_safetensors(tmp_path / "model.safetensors", SD1)
    assert catalog.model_family(str(checkpoint)).label == "SD 1.x"
    assert catalog.model_family(str(checkpoint)).label == "SD 1.x"
    assert len(reads) == 1  # the second run looked at the file's date only

    # the same name, downloaded again as another family (written whole, as tools do)
    fresh = sparse_safetensors(tmp_path / "fresh.safetensors", SDXL)
    os.replace(fresh, checkpoint)
    assert catalog.model_family(str(checkpoint)).label == "SDXL"
    assert len(reads) == 2

    # a companion that appears beside it may name another family: read again
    (tmp_path / "model.safetensors.companion").write_text("family: sdxl\n")
    catalog.model_family(str(checkpoint))
    assert len(reads) == 3


def test_a_request_replaced_by_its_own_values_is_itself() -> None:
    """A run replaces its request's seed, sampler and unused fields, most often by the values
    it has; each copy checks every field again, which a tiny model's run notices."""
    from studio.core.request import GenerationRequest

    request = GenerationRequest(prompt="a red circle", seed=5, scheduler="Euler")
    assert request.replace(seed=5, scheduler="Euler") is request
    changed = request.replace(seed=6)
    assert changed is not request and changed.seed == 6 and request.seed == 5
