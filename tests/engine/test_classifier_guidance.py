"""Classifier guidance on studio-tiny: off is exactly off, on moves the pictures toward the
class, with CFG and on a multistep and an ancestral sampler; cancel; the command line and
the metadata; a model without a classifier says so in one sentence."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from studio.core.paths import EMBEDDED_MODELS_DIR
from studio.core.request import GenerationRequest
from studio.engine.classifier_guidance import ClassifierGuide, Target
from studio.engine.guidance import AlphaDenoised
from tests.engine.conftest import RecordingReporter

HAVE_CLASSIFIER = (EMBEDDED_MODELS_DIR / "studio-tiny-classifier" / "model.safetensors").is_file()
needs_classifier = pytest.mark.skipif(
    not HAVE_CLASSIFIER, reason="studio-tiny-classifier is not in resources/models"
)

PROMPT = "a large circle in the centre on a black background"
BASE = GenerationRequest(
    prompt=PROMPT,
    model="studio-tiny",
    steps=10,
    cfg_scale=1.0,
    scheduler="DPM++ 2M",
    seed=100,
    batch_size=4,
)


class _Linear(torch.nn.Module):
    """log p(shape 0 | x) = Σ w·x (a constant gradient w), colour head constant."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w, requires_grad=False)

    def forward(self, x, t):  # noqa: ANN001, ANN201
        score = (x * self.w).flatten(1).sum(1)
        # log_softmax([score, 0]) [0] = score − log(1 + e^score); use a huge logit gap so
        # that log p ≈ score is not needed: the test reads the gradient from autograd too
        return torch.stack([score, torch.zeros_like(score)], 1), torch.zeros(len(x), 2)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_the_shift_is_dhariwal_and_nichols_for_every_parametrisation(kind: str) -> None:
    torch.manual_seed(0)
    alphas = torch.linspace(0.999, 0.01, 1000)
    denoised = AlphaDenoised(alphas, kind)
    guide = ClassifierGuide(_Linear(torch.randn(1, 4, 8, 8)), Target(0, None), scale=2.5)
    x = torch.randn(2, 4, 8, 8)
    eps = torch.randn(2, 4, 8, 8)
    t = 600
    a = alphas[t]
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    prediction = {"epsilon": eps, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}
    prediction = prediction.get(kind, x0)
    g = guide.gradient(x, t)
    shifted = guide(x, prediction, t, denoised)
    # ε̂' = ε̂ − s·√(1−ᾱ)·g, whatever the scheduler's parametrisation
    eps_after = (x - a.sqrt() * denoised.to_x0(x, shifted, t)) / (1 - a).sqrt()
    torch.testing.assert_close(eps_after, eps - 2.5 * (1 - a).sqrt() * g, atol=2e-4, rtol=1e-4)
    assert (
        guide.scale
        and ClassifierGuide(guide.classifier, Target(0, None), 0)(x, prediction, t, denoised)
        is prediction
    )


# -- on the embedded model ------------------------------------------------------------------


def _target_probability(images, target: str) -> float:  # noqa: ANN001
    """The classifier's mean probability of the target at t = 0 on the pictures' latents."""
    from studio.core import classifiers
    from studio.engine.classifier_guidance import load_classifier
    from studio.tiny.data import to_uint8, to_unit

    found = classifiers.classes_for("studio-tiny")
    shape, colour = classifiers.parse_target(target, found.shapes, found.colours)
    vae = _vae()
    with torch.no_grad():
        z = vae.encode(to_unit(to_uint8(images))).latent_dist.mean * vae.config.scaling_factor
        shape_logits, colour_logits = load_classifier(found.folder)(z, torch.zeros(1))
    p = torch.ones(len(images))
    if shape is not None:
        p = p * shape_logits.softmax(1)[:, shape]
    if colour is not None:
        p = p * colour_logits.softmax(1)[:, colour]
    return float(p.mean())


@functools.cache
def _vae():  # noqa: ANN202
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(EMBEDDED_MODELS_DIR / "studio-tiny" / "vae").eval()


@needs_classifier
def test_scale_zero_gives_exactly_the_plain_pixels(engine) -> None:  # noqa: ANN001
    plain = engine.run(BASE.replace(batch_size=2))
    off = engine.run(BASE.replace(batch_size=2, classifier_class="red star", classifier_scale=0))
    for a, b in zip(plain.images, off.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@needs_classifier
@pytest.mark.parametrize(
    ("scheduler", "cfg"), [("DPM++ 2M", 1.0), ("DPM++ 2M", 4.0), ("Euler a", 4.0)]
)
def test_a_positive_scale_moves_the_pictures_toward_the_class(engine, scheduler, cfg) -> None:  # noqa: ANN001
    request = BASE.replace(scheduler=scheduler, cfg_scale=cfg, classifier_class="star")
    plain = engine.run(request)
    guided = engine.run(request.replace(classifier_scale=5.0))
    before = _target_probability(plain.images, "star")
    after = _target_probability(guided.images, "star")
    assert after > before + 0.15, (before, after)
    assert all(np.isfinite(np.asarray(im, dtype=float)).all() for im in guided.images)


@needs_classifier
def test_cancel_and_previews_during_a_guided_run(engine) -> None:  # noqa: ANN001
    request = BASE.replace(batch_size=1, classifier_class="red", classifier_scale=2.0)
    reporter = RecordingReporter(cancel_at=2, engine=engine)
    result = engine.run(request, reporter)
    assert result.cancelled and result.images == []
    assert [p.step for p in reporter.steps][:2] == [1, 2]
    reporter = RecordingReporter()
    after = engine.run(request, reporter)
    assert not after.cancelled and len(after.images) == 1
    # every step of a guided run still shows its preview (the guided denoised estimate)
    assert [p.step for p in reporter.steps] == list(range(1, request.steps + 1))
    assert all(p.preview is not None and p.preview.size for p in reporter.steps)


@needs_classifier
def test_the_command_line_option_and_the_metadata(tmp_path, capsys) -> None:  # noqa: ANN001
    from studio.cli import main
    from studio.metadata import read_parameters

    target = tmp_path / "star.png"
    args = ["generate", PROMPT, "--steps", "4", "--seed", "3", "--out", str(target)]
    code = main([*args, "--classifier-guidance", "red star:2.5"])
    _out, err = capsys.readouterr()
    assert code == 0, err
    params = read_parameters(target)
    assert params.extras["Classifier guidance"] == "red star, 2.5"
    # the default scale; a class the classifier does not know: one sentence, status 2
    from studio.cli import _classifier_guidance

    assert _classifier_guidance(" star ", "studio-tiny") == {
        "classifier_class": "star",
        "classifier_scale": 2.0,
    }
    assert main([*args, "--classifier-guidance", "teapot:2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "teapot" in err and "\n" not in err


def test_a_model_without_a_classifier_says_so_in_one_sentence(tiny_sd, tmp_path, capsys) -> None:  # noqa: ANN001
    from studio.cli import main
    from studio.core.classifiers import ClassifierGuidanceError
    from studio.engine.generate import Engine

    code = main(
        ["generate", "a red circle", "--model", tiny_sd, "--steps", "2", "--width", "32",
         "--height", "32", "--out", str(tmp_path / "x.png"), "--classifier-guidance", "star"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "has no classifier" in err and "\n" not in err
    request = GenerationRequest(
        prompt="a red circle", model=tiny_sd, steps=2, width=32, height=32,
        classifier_class="star", classifier_scale=2.0,
    )  # fmt: skip
    with pytest.raises(ClassifierGuidanceError, match="has no classifier"):
        Engine().run(request)


def test_the_request_checks_the_scale_and_the_class_in_one_sentence_each() -> None:
    assert (
        GenerationRequest(prompt="x", classifier_class="red star", classifier_scale=2).problems()
        == []
    )
    assert GenerationRequest(prompt="x", classifier_scale=2).problems() == []  # no class: off
    (problem,) = GenerationRequest(
        prompt="x", classifier_class="star", classifier_scale=60
    ).problems()
    assert problem.startswith("The classifier guidance scale")
    (problem,) = GenerationRequest(prompt="x", classifier_class="big red star").problems()
    assert "a shape, a colour or both" in problem
    request = GenerationRequest(prompt="x", classifier_class="red star", classifier_scale=2.5)
    assert GenerationRequest.from_dict(request.to_dict()) == request
