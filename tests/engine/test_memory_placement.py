"""Where ModelManager places a model: memory_policy's choice on CUDA (faked here: this
machine has none), nothing new on the CPU."""

from __future__ import annotations

import pytest
import torch

from studio.bench.tiny_families import make_pipeline
from studio.core.settings import EngineSettings
from studio.engine import devices
from studio.engine.models import ModelManager

GIB = 2**30


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A 24 GB CUDA GPU with `free[0]` GiB free, as far as placement asks."""
    free = [24.0]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0] * GIB, 24 * GIB))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(devices, "total_vram_gb", lambda device: 24.0)
    return free


def _manager(**settings) -> ModelManager:  # noqa: ANN003
    manager = ModelManager(EngineSettings(device="cpu", **settings))
    manager.device = torch.device("cuda")  # placement only asks; nothing moves
    return manager


def test_on_cuda_the_family_and_the_free_memory_choose_the_placement(fake_cuda) -> None:  # noqa: ANN001
    pipe = make_pipeline("flux").to(dtype=torch.float16)  # the automatic fp16 of CUDA
    manager = _manager()
    for free, expected in ((80, "gpu"), (32, "model_offload"), (12, "group_offload")):
        fake_cuda[0] = free
        assert manager._placement(pipe) == expected, free
    assert pipe.dtype == torch.bfloat16  # Flux runs in bf16, never fp16
    # a placement the user chose is kept
    assert _manager(cpu_offload=True)._placement(pipe) == "model_offload"
    assert _manager(cpu_offload=False)._placement(pipe) == "gpu"
    # a precision the user chose is kept
    pipe = make_pipeline("flux").to(dtype=torch.float16)
    _manager(dtype="float16")._placement(pipe)
    assert pipe.dtype == torch.float16


def test_fp8_weights_store_the_denoiser_in_float8(fake_cuda) -> None:  # noqa: ANN001
    pipe = make_pipeline("flux").to(dtype=torch.bfloat16)
    fake_cuda[0] = 24
    assert _manager(fp8_weights=True)._placement(pipe) == "model_offload"  # not group
    weights = {p.dtype for p in pipe.transformer.parameters()}
    assert torch.float8_e4m3fn in weights
    assert pipe.vae.dtype == torch.bfloat16  # the denoiser only


def test_on_the_cpu_nothing_changes() -> None:
    pipe = make_pipeline("flux")
    manager = ModelManager(EngineSettings(device="cpu", fp8_weights=True))
    assert manager._placement(pipe) == "gpu"  # i.e. pipe.to(the device)
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.float32}


def test_a_family_that_needs_bfloat16_is_loaded_in_it_on_cuda(fake_cuda, tmp_path) -> None:  # noqa: ANN001
    """The dtype is chosen before loading, from the folder's or the file's family: a GGUF
    model computes in the dtype it was loaded with, and can't be cast afterwards."""
    import diffusers

    from studio.bench.tiny_families import build
    from studio.core import families
    from studio.engine import single_file
    from tests.sparse_files import sparse_safetensors

    manager = _manager()
    automatic = manager.dtype  # what any other family gets
    loaded = {}
    manager._place = lambda pipe: loaded.setdefault("dtype", pipe.dtype)  # nothing moves
    manager._load(str(build("flux", tmp_path / "flux")), diffusers.FluxPipeline)
    assert loaded["dtype"] == torch.bfloat16 != automatic
    assert manager._dtype_for(families.of_folder(build("sd1", tmp_path / "sd1"))) == automatic
    file = sparse_safetensors(
        tmp_path / "flux1-dev-Q4.safetensors", dict(single_file.VARIANTS["flux-dev"].signature)
    )
    assert manager._dtype_for_file(file) == torch.bfloat16
    assert _manager(dtype="float16")._dtype_for_file(file) == torch.float16  # chosen: kept
    assert manager._dtype_for_file(tmp_path / "missing.safetensors") == automatic


def test_a_quantised_denoiser_is_neither_cast_nor_given_fp8_weights(fake_cuda) -> None:  # noqa: ANN001
    """diffusers refuses to cast a quantised (GGUF) model: placement leaves it as loaded."""
    pipe = make_pipeline("flux").to(dtype=torch.float16)
    pipe.transformer.is_quantized = True  # what diffusers marks a GGUF model with
    fake_cuda[0] = 80
    assert _manager(fp8_weights=True)._placement(pipe) in ("gpu", "model_offload")
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.float16}
