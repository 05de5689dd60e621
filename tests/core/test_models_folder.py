"""The artist's models folder: AUTOMATIC1111's and ComfyUI's layouts are read as they are,
names from it work wherever a model is named, and a hostile tree costs no hang."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from studio.core import models_folder
from studio.core.catalog import resolve


@pytest.fixture(autouse=True)
def no_folder_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test chooses its own folder; none leaks into the next test."""
    monkeypatch.setattr(models_folder, "_chosen", {"command line": None, "setting": None})
    monkeypatch.setattr(models_folder, "_scanned", {})
    monkeypatch.delenv(models_folder.ENV_VAR, raising=False)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _webui(root: Path) -> Path:
    """An AUTOMATIC1111 install, as artists have it."""
    models = root / "stable-diffusion-webui" / "models"
    _touch(models / "Stable-diffusion" / "v1-5-pruned-emaonly.safetensors")
    _touch(models / "Stable-diffusion" / "SDXL" / "ponyDiffusionV6XL.safetensors")
    _touch(models / "Stable-diffusion" / "SDXL" / "ponyDiffusionV6XL.preview.png")
    _touch(models / "Stable-diffusion" / "put checkpoints here.txt")
    _touch(models / "Lora" / "detail_slider.safetensors")
    _touch(models / "LyCORIS" / "style_loha.safetensors")
    _touch(models / "ControlNet" / "control_v11p_sd15_canny.safetensors")
    return root / "stable-diffusion-webui"


def _comfyui(root: Path) -> Path:
    models = root / "ComfyUI" / "models"
    _touch(models / "checkpoints" / "juggernautXL.safetensors")
    _touch(models / "diffusion_models" / "flux1-dev-Q4_K_S.gguf")
    _touch(models / "loras" / "flux" / "realism.safetensors")
    _touch(models / "controlnet" / "union_sdxl.safetensors")
    diffusers_folder = models / "diffusers" / "sd-turbo"
    _touch(diffusers_folder / "model_index.json", b"{}")
    _touch(diffusers_folder / "unet" / "diffusion_pytorch_model.safetensors")
    return models  # pointed at models/ itself


def _names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_automatic1111s_folder_is_read_as_it_is(tmp_path) -> None:
    found = models_folder.scan(_webui(tmp_path))
    assert _names(found.checkpoints) == [
        "ponyDiffusionV6XL.safetensors",  # by name, wherever it is
        "v1-5-pruned-emaonly.safetensors",
    ]
    assert _names(found.loras) == ["detail_slider.safetensors", "style_loha.safetensors"]
    assert _names(found.controlnets) == ["control_v11p_sd15_canny.safetensors"]


def test_a_webui_folder_with_its_embeddings_beside_models_is_read_through_models(
    tmp_path,
) -> None:
    """A1111 and Forge keep embeddings/ beside models/: the install folder found nothing
    (embeddings/ made it look like the models folder itself); now models/ is read, and the
    embeddings beside it too."""
    webui = _webui(tmp_path)
    _touch(webui / "embeddings" / "easynegative.safetensors")
    found = models_folder.scan(webui)
    assert _names(found.checkpoints) == [
        "ponyDiffusionV6XL.safetensors",
        "v1-5-pruned-emaonly.safetensors",
    ]
    assert _names(found.loras) == ["detail_slider.safetensors", "style_loha.safetensors"]
    assert _names(found.embeddings) == ["easynegative.safetensors"]
    models_folder.use(webui)
    assert resolve("ponyDiffusionV6XL").location.endswith("ponyDiffusionV6XL.safetensors")


def test_controlnets_kept_as_diffusers_folders_are_listed_by_their_folders_name(
    tmp_path,
) -> None:
    """Two ControlNet folders (config.json and diffusion_pytorch_model.safetensors each) were
    both listed as "diffusion_pytorch_model", and either could run under that name."""
    webui = _webui(tmp_path)
    for name in ("canny_cn", "scribble_cn"):
        _touch(webui / "models" / "ControlNet" / name / "config.json", b"{}")
        _touch(webui / "models" / "ControlNet" / name / "diffusion_pytorch_model.safetensors")
    found = models_folder.scan(webui)
    assert _names(found.controlnets) == [
        "canny_cn",
        "control_v11p_sd15_canny.safetensors",
        "scribble_cn",
    ]
    models_folder.use(webui)
    assert models_folder.find("scribble_cn", "controlnets") == (
        webui / "models" / "ControlNet" / "scribble_cn"
    )


def test_comfyuis_folder_with_diffusers_folders_as_one_model(tmp_path) -> None:
    found = models_folder.scan(_comfyui(tmp_path))
    assert _names(found.checkpoints) == [
        "flux1-dev-Q4_K_S.gguf",
        "juggernautXL.safetensors",
        "sd-turbo",  # the folder, not its weights
    ]
    assert _names(found.loras) == ["realism.safetensors"]


def test_a_name_from_the_folder_works_wherever_a_model_is_named(tmp_path) -> None:
    webui = _webui(tmp_path)
    with pytest.raises(Exception, match="not a known model"):
        resolve("ponyDiffusionV6XL")
    models_folder.use(webui)
    for name in ("ponyDiffusionV6XL", "ponydiffusionv6xl.safetensors", "SDXL/ponyDiffusionV6XL"):
        source = resolve(name)
        assert source.kind == "checkpoint" and source.location.endswith(
            "ponyDiffusionV6XL.safetensors"
        )
    # the command line's folder comes before the window's setting and the environment's
    comfy = _comfyui(tmp_path)
    models_folder.use(comfy, "setting")
    assert models_folder.models_dir() == webui
    models_folder.use(None)
    assert models_folder.models_dir() == comfy
    assert resolve("sd-turbo").kind == "folder"


def test_a_looping_or_huge_tree_costs_no_hang(tmp_path, monkeypatch) -> None:
    webui = _webui(tmp_path)
    checkpoints = webui / "models" / "Stable-diffusion"
    os.symlink(checkpoints, checkpoints / "loop")  # links back up
    os.symlink(tmp_path / "nowhere", checkpoints / "dangling.safetensors")
    deep = checkpoints
    for level in range(12):
        deep = deep / f"d{level}"
    _touch(deep / "too_deep.safetensors")
    found = models_folder.scan(webui)
    assert "too_deep.safetensors" not in _names(found.checkpoints)
    assert len(found.checkpoints) == 2 and not found.truncated
    monkeypatch.setattr(models_folder, "MAX_ENTRIES", 3)
    assert models_folder.scan(webui).truncated


def test_the_command_line_takes_a_models_folder(tiny_sd, tmp_path, capsys) -> None:
    from studio.cli import main
    from studio.metadata import read_parameters

    models = _comfyui(tmp_path)
    shutil.copytree(tiny_sd, models / "diffusers" / "my-tiny")
    target = tmp_path / "out.png"
    args = ["--models-dir", str(models), "generate", "a red circle", "--model", "my-tiny"]
    code = main([*args, "--steps", "2", "--width", "32", "--height", "32", "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    assert read_parameters(target).model is not None
    code = main(["--models-dir", str(tmp_path / "none"), "generate", "x"])
    assert code == 2 and "is not a folder" in capsys.readouterr().err


def test_the_checkpoints_folder_itself_is_read_as_its_tools(tmp_path) -> None:
    """Artists point at models/Stable-diffusion itself (where their checkpoints are), not
    the folder above it: that listed nothing. Its tool's folder is read instead."""
    webui = _webui(tmp_path)
    for pointed in ("Stable-diffusion", "Lora"):
        found = models_folder.scan(webui / "models" / pointed)
        assert [p.name for p in found.checkpoints] == [
            "ponyDiffusionV6XL.safetensors",
            "v1-5-pruned-emaonly.safetensors",
        ]
        assert [p.name for p in found.loras] == [
            "detail_slider.safetensors",
            "style_loha.safetensors",
        ]
    assert models_folder.scan(tmp_path / "elsewhere").checkpoints == []
