"""Finding and loading models, and refusing the ones that are not safe or not there."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from studio.core.catalog import ModelError, add_model, added_models, remove_model, resolve
from studio.core.request import Mode
from studio.engine.models import ModelManager, check_checkpoint_is_safe


class _RunsCode:
    """Unpickling this calls a function: what a malicious .ckpt does."""

    def __reduce__(self):
        return (Path.touch, (Path(_RunsCode.marker),))


def test_specs_resolve_to_their_kind(tiny_sd: str, tmp_path: Path) -> None:
    assert resolve(tiny_sd).kind == "folder"
    assert resolve("someone/some-model").kind == "hub"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    assert resolve(str(weights)).kind == "checkpoint"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "No model is chosen"),
        ("/nowhere/model.safetensors", "does not exist"),
        ("not a model", "is not a known model"),
    ],
)
def test_bad_specs_get_one_sentence(spec: str, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        resolve(spec)


def test_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="has no model_index.json"):
        resolve(str(tmp_path))


def test_pickled_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    _RunsCode.marker = str(marker)
    checkpoint = tmp_path / "evil.ckpt"
    checkpoint.write_bytes(pickle.dumps({"state_dict": _RunsCode()}))
    with pytest.raises(ModelError, match="pickled checkpoint that could run code"):
        ModelManager()._load(str(checkpoint), object)
    assert not marker.exists()


def test_a_plain_tensor_checkpoint_passes_the_safety_check(tmp_path: Path) -> None:
    checkpoint = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, checkpoint)
    check_checkpoint_is_safe(checkpoint)  # no error


def test_hub_model_missing_offline_is_a_clear_error() -> None:
    with pytest.raises(
        ModelError,
        match="is not a folder here, nor in the local cache of the model hub, and the studio is "
        "offline",
    ):
        ModelManager().pipeline("nobody/no-such-model", Mode.TEXT_TO_IMAGE)


def test_hub_model_loads_from_the_local_cache_offline(
    tiny_sd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}
    cache = tmp_path / "hub"
    repo = cache / "models--studio--cached-tiny"
    commit = "0" * 40
    shutil.copytree(tiny_sd, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    manager = ModelManager()
    pipe = manager.pipeline("studio/cached-tiny", Mode.TEXT_TO_IMAGE)
    assert pipe.unet is not None and manager.weight_loads == 1


def test_broken_model_folder_is_one_sentence(tiny_sd: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not really weights")
    with pytest.raises(ModelError, match="is damaged or incompletely downloaded"):
        ModelManager().pipeline(str(broken), Mode.TEXT_TO_IMAGE)


def test_added_models_are_remembered(tiny_sd: str) -> None:
    add_model(tiny_sd)
    add_model(tiny_sd)
    assert added_models() == [tiny_sd]
    remove_model(tiny_sd)
    assert added_models() == []
    with pytest.raises(ModelError):
        add_model("/no/such/folder/model.safetensors")


def test_loading_a_model_once_for_every_mode(tiny_sd: str) -> None:
    manager = ModelManager()
    for mode in (Mode.TEXT_TO_IMAGE, Mode.INPAINT, Mode.IMAGE_TO_IMAGE, Mode.TEXT_TO_IMAGE):
        manager.pipeline(tiny_sd, mode)
    assert manager.weight_loads == 1
    assert manager.device.type == "cpu" and manager.dtype == torch.float32


def test_hub_download_reports_progress(tiny_sd: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub model not in the cache is downloaded, with progress through the status callback."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    asked: dict[str, list[str]] = {}

    def fake_index_download(repo_id, filename, local_files_only=False):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(Path(tiny_sd) / filename)

    def fake_snapshot_download(
        repo_id,
        allow_patterns=None,
        ignore_patterns=None,
        local_files_only=False,
        tqdm_class=None,
    ):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        asked["allow"], asked["ignore"] = allow_patterns, ignore_patterns
        bar = tqdm_class(total=4)
        for _ in range(4):
            bar.update(1)
        bar.close()
        return tiny_sd

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_index_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    statuses: list[tuple[str, float | None]] = []
    manager = ModelManager(status=lambda message, fraction: statuses.append((message, fraction)))
    manager.pipeline("studio/remote-tiny", Mode.TEXT_TO_IMAGE)
    fractions = [f for message, f in statuses if message.startswith("Downloading studio/")]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert statuses[-1] == ("studio/remote-tiny is ready.", 1.0)
    # only the pipeline's component folders, never root checkpoints or fp16 duplicates
    assert "unet/*.safetensors" in asked["allow"] and "*.safetensors" not in asked["allow"]
    assert "*.fp16.*" in asked["ignore"]


def test_single_file_checkpoints_give_clear_sentences(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    damaged = tmp_path / "half-downloaded.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(ModelError, match="not a readable .safetensors file"):
        ModelManager().pipeline(str(damaged), Mode.TEXT_TO_IMAGE)

    # A UNet's tensors alone: no family the studio can build a pipeline of (offline or not).
    sd_like = tmp_path / "sd-like.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}, sd_like)
    with pytest.raises(ModelError, match="not a checkpoint of a model family the studio knows"):
        ModelManager().pipeline(str(sd_like), Mode.TEXT_TO_IMAGE)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", "SDXL"),
        ("cond_stage_model.transformer.text_model.embeddings.position_ids", "SD 1.x"),
    ],
)
def test_a_single_file_is_read_as_its_family(tmp_path: Path, key: str, expected: str) -> None:
    """Recognised from its tensor names; shapes unlike the published model's (whose configs
    the studio ships) need a companion folder, which the sentence says how to add.
    (Loading such files for real: tests/engine/test_single_file.py.)"""
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file(
        {key: torch.zeros(2), "model.diffusion_model.out.0.weight": torch.zeros(2)}, checkpoint
    )
    with pytest.raises(ModelError, match=f"is an {expected} model of unusual shapes"):
        ModelManager().pipeline(str(checkpoint), Mode.TEXT_TO_IMAGE)
