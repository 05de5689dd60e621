"""The memory policy: per family, the GPU memory at native size and where a model goes by
the GPU memory free (a pure function of the table)."""

from __future__ import annotations

import pytest

from studio.core import families, memory_policy
from studio.core.memory_policy import FAMILY_MEMORY, choose, thresholds


def test_every_declared_family_has_a_row() -> None:
    declared = {family.name for family in families.all_families()}
    assert declared == set(FAMILY_MEMORY)


@pytest.mark.parametrize("family", sorted(FAMILY_MEMORY))
def test_each_threshold_is_where_the_placement_changes(family: str) -> None:
    all_on_gpu, model_offload = thresholds(family)
    assert all_on_gpu > model_offload > 0
    assert choose(family, all_on_gpu).placement == "gpu"
    assert choose(family, all_on_gpu - 0.01).placement == "model_offload"
    assert choose(family, model_offload).placement == "model_offload"
    assert choose(family, model_offload - 0.01).placement == "group_offload"
    assert choose(family, 0.5).placement == "group_offload"
    # fp8 weights halve the denoiser: every threshold comes down
    fp8 = thresholds(family, fp8=True)
    assert fp8[0] < all_on_gpu and fp8[1] <= model_offload


def test_published_sizes_give_the_placements_artists_know() -> None:
    on = {f: [choose(f, free).placement for free in (8, 12, 24, 48, 80)] for f in FAMILY_MEMORY}
    assert on["sd1"] == ["gpu"] * 5
    assert on["sdxl"] == ["group_offload", "gpu", "gpu", "gpu", "gpu"]
    # Flux.1 dev: 24 GB of bf16 transformer, 9.5 GB of T5; 34 GB in all
    assert on["flux-dev"] == ["group_offload"] * 3 + ["gpu", "gpu"]
    assert choose("flux-dev", 32).placement == "model_offload"
    assert choose("flux-dev", 24, fp8=True).placement == "model_offload"
    assert on["qwen-image"] == ["group_offload"] * 3 + ["model_offload", "gpu"]
    assert 33 < FAMILY_MEMORY["flux-dev"].all_on_gpu_gib() < 36
    assert 22 < FAMILY_MEMORY["flux-dev"].network_gib()["Transformer"] < 23


def test_families_trained_in_bfloat16_run_in_bfloat16() -> None:
    assert memory_policy.dtype_for("flux-dev") == "bfloat16"
    assert memory_policy.dtype_for("qwen-image") == "bfloat16"
    assert memory_policy.dtype_for("z-image") == "bfloat16"
    assert memory_policy.dtype_for("chroma") == "bfloat16"
    assert memory_policy.dtype_for("sd3") == "bfloat16"
    assert memory_policy.dtype_for("sdxl") is None  # the automatic precision: fp16
    assert choose("sd1", 24).dtype == "float16"


def test_a_family_of_no_known_size_goes_on_the_gpu_as_before() -> None:
    assert choose("unknown", 4) is None
    assert memory_policy.table(None)[0][3] == ""  # no GPU: no placement to show
    assert memory_policy.table(24)[0][3] == "All on the GPU"
