"""The GPU bench's SDXL and Flux.1-dev models: built from the published configs (here on
the meta device: no memory, no time), and the ladder's code path on a transformer family
(here the tiny Flux pipeline on the CPU), so `studio bench --gpu --model flux` is known to
run the next time a GPU is at hand."""

from __future__ import annotations

import math

import pytest
import torch

from studio.bench import gpu_bench, random_models
from studio.bench.runner import all_finite, format_table


@pytest.mark.parametrize("model", ["sd15", "sdxl", "flux"])
def test_the_gpu_models_have_the_published_parameter_counts(model: str) -> None:
    from studio.engine.family_runtime import family_of

    build = getattr(random_models, gpu_bench.ARCHITECTURES[model].builder)
    pipe = build(torch.bfloat16, device="meta")
    counts = random_models.parameter_counts(pipe)
    published = random_models.PUBLISHED_PARAMETERS[model]
    assert set(counts) == set(published)
    for name, expected in published.items():
        assert math.isclose(counts[name], expected, rel_tol=0.005), (name, counts[name])
    networks = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert all(p.dtype == torch.bfloat16 and p.is_meta for m in networks for p in m.parameters())
    # the engine knows the family, so it runs them with their sampler and guidance
    assert family_of(pipe).name == {"sd15": "sd1", "sdxl": "sdxl", "flux": "flux-dev"}[model]
    assert gpu_bench.ARCHITECTURES[model].size == (512 if model == "sd15" else 1024)


def test_the_gpu_ladder_runs_a_transformer_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flux's ladder at 64×64 on the CPU, on the tiny Flux pipeline in place of the 12B one:
    the denoiser's hooks, its FLOPs on the pipeline's own inputs, fused projections, and a
    preview timed on the packed latents the run made."""
    from studio.bench.tiny_families import make_pipeline

    def tiny_flux(dtype=None, device="cpu"):  # noqa: ANN001, ANN202
        return make_pipeline("flux").to(device=device, dtype=dtype)

    monkeypatch.setattr(random_models, "build_flux", tiny_flux)
    rows = ("bare_diffusers", "fuse_qkv")  # the engine with channels-last and fused qkv
    results = gpu_bench.run_gpu_bench("cpu", 64, 2, 1, rows=rows, model="flux")
    keys = [f"{row}.{figure}" for row in rows for figure in ("it_per_s", "s_per_image")]
    keys += ["fuse_qkv.preview_cost_share"]
    assert all_finite(results, [*keys, "unet_flops_per_step"]) == []
    assert results["unet_flops_per_step"] > 1e6  # one transformer call at 64×64
    assert 0 < results["fuse_qkv"]["preview_cost_share"] < 1
    assert results["fuse_qkv"]["attention"] == "FluxAttnProcessor"  # Flux's own, fused
    table = format_table({"gpu": results})
    assert "Flux.1-dev architecture, 64×64, 2 steps" in table
    assert "H100: eager 6.7 s/image" in table  # the published anchor beside our figures


def test_fusing_attention_again_keeps_each_family_s_own_processors() -> None:
    """A retry with memory savers (and each row of the ladder) fuses again: Flux and SD 3
    keep their own fused processors, and Z-Image, which cannot fuse, runs as it is."""
    from studio.bench.tiny_families import make_pipeline
    from studio.engine.speedups import fuse_attention

    for family in ("flux", "sd3", "z_image"):
        pipe = make_pipeline(family)
        network = pipe.transformer
        fuse_attention(network)
        first = {type(p).__name__ for p in getattr(network, "attn_processors", {}).values()}
        fuse_attention(network)
        again = {type(p).__name__ for p in getattr(network, "attn_processors", {}).values()}
        assert first == again, family
        with torch.inference_mode():
            pipe(prompt="a", width=64, height=64, num_inference_steps=1, output_type="latent")
