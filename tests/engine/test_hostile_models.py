"""Hostile and damaged model folders, generated from a good one at test time: each ends in
one printable sentence that names the file and says what to do — no traceback on the
terminal (it goes to the log), no hang, nothing run from the folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from studio.cli import main


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _reshaped_unet(folder: Path) -> None:
    """Weights of another shape under the same names (a file from a different model)."""
    from safetensors.torch import load_file, save_file

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k, v in tensors.items() if v.dim() == 4)
    tensors[name] = tensors[name][:, :1].contiguous()
    save_file(tensors, str(weights))


def _loop(folder: Path) -> None:
    target = folder / "unet" / "config.json"
    target.unlink()
    target.symlink_to(target)


def _pipe(folder: Path) -> None:
    target = folder / "unet" / "config.json"
    target.unlink()
    os.mkfifo(target)


def _pickled_only(folder: Path) -> None:
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))


MARKER = Path("/tmp/latent-studio-code-ran")  # what the model's code would leave


def _with_code(folder: Path, where: str) -> None:
    """Code that would leave a marker if anything imported it, and the folder asking for it."""
    code = f"open({str(MARKER)!r}, 'w').write('ran')\n"
    (folder / "unet" / "my_unet.py").write_text(code)
    (folder / "my_pipeline.py").write_text(code)
    if where == "pipeline":
        _edit_json(
            folder / "model_index.json", lambda c: c.update(_class_name=["my_pipeline", "P"])
        )
    elif where == "component":
        _edit_json(folder / "model_index.json", lambda c: c.update(unet=["my_unet", "MyUNet"]))
    else:
        _edit_json(folder / "unet" / "config.json", lambda c: c.update(auto_map={"x": "my_unet.X"}))


# (what is done to a copy of a good model, words the sentence must hold)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "index not JSON": (
        lambda f: (f / "model_index.json").write_text("{not json"),
        "model_index.json of 'model' is damaged",
    ),
    "a component missing": (
        lambda f: shutil.rmtree(f / "vae"),
        "'model' has no 'vae' folder, which its model_index.json lists",
    ),
    "truncated weights": (
        lambda f: _truncate(f / "unet" / "diffusion_pytorch_model.safetensors"),
        "'unet/diffusion_pytorch_model.safetensors' in 'model' is damaged or incompletely",
    ),
    "weights missing": (  # a copy of the configs only (an interrupted download)
        lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").unlink(),
        "The 'unet' of 'model' has no weights file: the download or copy is incomplete.",
    ),
    "config not JSON": (
        lambda f: (f / "vae" / "config.json").write_text("[1, 2"),
        "'vae/config.json' in 'model' is damaged (not a valid JSON file)",
    ),
    "weights of another shape": (_reshaped_unet, "The weights of 'model' do not fit"),
    "absurd config values": (
        lambda f: _edit_json(f / "unet" / "config.json", lambda c: c.update(block_out_channels=[])),
        "The configuration of 'model' holds values no model can be built from",
    ),
    "zero heads": (
        lambda f: _edit_json(f / "unet" / "config.json", lambda c: c.update(attention_head_dim=0)),
        "'model'",
    ),
    "config values of the wrong type": (
        lambda f: _edit_json(f / "unet" / "config.json", lambda c: c.update(down_block_types=5)),
        "The configuration of 'model' holds values no model can be built from",
    ),
    "a link in a loop": (_loop, "'unet/config.json' in 'model' is a link that leads nowhere"),
    "a named pipe": (_pipe, "'unet/config.json' in 'model' is not a regular file"),
    "pickled weights only": (_pickled_only, "holds pickled weights, which could run code"),
    "a custom pipeline": (
        lambda f: _with_code(f, "pipeline"),
        "needs pipeline code of its own (a custom pipeline), which the studio never runs",
    ),
    "a custom component": (
        lambda f: _with_code(f, "component"),
        "The 'unet' of 'model' comes with code of its own (my_unet)",
    ),
    "auto_map": (lambda f: _with_code(f, "auto_map"), "asks for code shipped with the model"),
    "escape codes in a class name": (
        lambda f: _edit_json(
            f / "model_index.json", lambda c: c.update(unet=["diffusers", "UNet\x1b[2J\x9b31m"])
        ),
        "'model'",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_model_folder_is_one_printable_sentence(
    damage: str, tiny_sd: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd, folder)
    make_damage, words = DAMAGE[damage]
    MARKER.unlink(missing_ok=True)
    make_damage(folder)
    code = main(["generate", "a red circle", "--model", str(folder), "--steps", "1"])
    out, err = capsys.readouterr()
    assert code in (1, 2) and out == ""
    *progress, sentence = err.strip().splitlines()
    assert all(line.startswith("Loading ") for line in progress), err  # no traceback
    assert sentence.startswith("studio: ") and words in sentence, err
    assert not any(ch in err for ch in "\x1b\x9b\x07")  # nothing a terminal acts on
    for library_internal in ("division by zero", "invalid literal", "meta", "Traceback"):
        assert library_internal not in err
    assert not MARKER.exists()  # no code from the folder ran
