"""Running a request: the diffusers pipelines, step reports with previews, cancel, cascade."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from studio.core import embeddings, imaging
from studio.core.branches import parent_of
from studio.core.jobs import (
    GenerationError,
    GenerationResult,
    NullReporter,
    Reporter,
    Stage,
)
from studio.core.prompt_syntax import CLIP_SKIP_FAMILIES, unrun_syntax_note
from studio.core.prompt_tags import repeated_lora_note, split_lora_tags
from studio.core.request import (
    HIRES_FACTOR,
    MAX_STEPS,
    GenerationRequest,
    Mode,
    RequestError,
    Upscaler,
    batch_seeds,
    resolve_seed,
)
from studio.core.schedulers import (
    FAST_SCHEDULERS,
    SCHEDULER_NAMES,
    closest_scheduler,
    takes_over,
)
from studio.core.settings import EngineSettings
from studio.engine import classifier_guidance, controlnets, family_runtime, speedups
from studio.engine.branching import (
    BranchUnsupported,
    ReachedStep,
    SamplerTakeOverFailed,
    StateStore,
    StepRecorder,
    StepState,
    fingerprint,
)
from studio.engine.devices import wants_vae_tiling
from studio.engine.family_runtime import call_parameters, family_of
from studio.engine.guidance import (
    GenerationCancelled,
    GuidanceSettings,
    GuidanceTap,
    denoised_for,
)
from studio.engine.loras import active_loras
from studio.engine.models import ModelManager
from studio.engine.preview import Previewer, coefficients_for
from studio.engine.prompt_encoding import prompt_arguments, runs_step_prompts, step_prompts
from studio.engine.schedulers import scheduler_for
from studio.engine.step_reports import StepReports

log = logging.getLogger(__name__)


class Engine:
    """Runs requests one at a time. Lives on one thread; `cancel()` may be called from any."""

    def __init__(
        self, settings: EngineSettings | None = None, models: ModelManager | None = None
    ) -> None:
        self.settings = settings or EngineSettings()
        self.models = models or ModelManager(self.settings)
        self._cancel = threading.Event()
        self._reporter: Reporter = NullReporter()
        self._compiled_shapes: set[tuple[int, ...]] = set()  # (UNet, width, height, UNet batch)
        self._stages: list[Stage] = []  # what the current run's stages ran
        # every one-image job's steps, for branches ("Continue from here")
        self.states = StateStore(self.settings.branch_memory_mb * 2**20)
        self._job_key: str | None = None  # where the running stage's steps are kept
        self._kept_steps: list[StepState] = []  # the last stage's, as they were kept
        self._resume: _Resume | None = None  # the state the running stage continues from
        self._stop_after: int | None = None  # a replay's last step
        self._running_recorder: StepRecorder | None = None

    def cancel(self) -> None:
        self._cancel.set()

    def run(
        self,
        request: GenerationRequest,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Run a request. `cancel`, when given, is this job's own flag: setting it before the
        run starts cancels the job too, which a shared flag could not promise."""
        request.validate()
        self._cancel = cancel or threading.Event()
        self._reporter = reporter or NullReporter()
        self.models.status = self._reporter.status
        request = request.replace(seed=resolve_seed(request.seed))
        if request.mode is Mode.UPSCALE or request.upscaler is Upscaler.X4:
            self.models.check_upscaler(request.upscale_model)  # before any step runs
        family = self.models.family(request.model)
        if family is not None and request.mode is not Mode.UPSCALE:
            request = self._in_size_steps(request, family)
            if request.upscaler is Upscaler.HIRES and not family.offers("img2img"):
                raise RequestError(  # said before the picture it would enlarge is made
                    [
                        f"Hires fix runs image→image, which {family.label} models do not "
                        "have: upscale with the ×4 upscaler instead."
                    ]
                )
        seeds = batch_seeds(request.seed, request.batch_size)
        timings: dict[str, float] = {}
        self._stages: list[Stage] = []
        self._union_types: tuple[str, ...] | None = None  # the generate stage's ControlNets
        self._unused: dict[str, str] = {}  # request fields the model does not use: their notes
        started = time.perf_counter()
        self.states.set_budget(self.settings.branch_memory_mb * 2**20)
        try:
            with torch.inference_mode():
                self._prepare_branch(request, timings)
                self._job_key = fingerprint(request) if len(seeds) == 1 else None
                images = self._run_mode(request, seeds, timings)
                # the metadata records the sampler that ran (a family's closest relative)
                ran = next((s.scheduler for s in self._stages if s.name == "generate"), None)
                if ran is not None:
                    request = request.replace(scheduler=ran)
                # nor a negative prompt or CFG rescale the model did not use
                request = request.replace(**{f: _UNUSED_VALUES[f] for f in self._unused})
                if request.upscaler is not None and request.mode is not Mode.UPSCALE:
                    images = self._upscale(request, images, seeds, timings)
        except GenerationCancelled:
            timings["total"] = time.perf_counter() - started
            return GenerationResult([], request, seeds, timings, cancelled=True)
        finally:
            key = self._job_key or ""
            self._job_key, self._resume, self._stop_after = None, None, None
            self._running_recorder, self._kept_steps = None, []  # the store's to keep or drop
        timings["total"] = time.perf_counter() - started
        stages = list(self._stages)
        kept = self.states.kept(key)
        return GenerationResult(images, request, seeds, timings, stages=stages, kept=kept)

    def _in_size_steps(self, request: GenerationRequest, family: Any) -> GenerationRequest:
        """The request cut down to the sizes the family makes (a transformer family's sides
        come in 16 pixels: SD 3 and Z-Image refuse others, Flux cuts them down unsaid), said
        in a note; the metadata records the size that ran."""
        step = family.size_step
        width, height = (max(step, side // step * step) for side in (request.width, request.height))
        if (width, height) == (request.width, request.height):
            return request
        self._note(
            f"{family.label} makes pictures in steps of {step} pixels: "
            f"{request.width}×{request.height} runs as {width}×{height}."
        )
        return request.replace(width=width, height=height)

    # -- the noising view ----------------------------------------------------------------

    def noising_view(self, request: GenerationRequest) -> Any:
        """What image→image starts from at the request's strength — the input image encoded
        and noised by the scheduler to its first timestep with the request's seed, exactly
        the first input of the denoising network — decoded as the live preview decodes
        (RGB, uint8, H×W×3). Nothing is denoised, saved or kept."""
        request = request.replace(seed=resolve_seed(request.seed))
        pipe, latents = self.noised_start(request)
        method = self.settings.preview_method if self.settings.preview_method != "none" else "vae"
        previewer = self._previewer(pipe, request.width, request.height, method)
        copy = previewer.start(latents)
        assert copy is not None
        return copy.collect()

    def noised_start(self, request: GenerationRequest) -> tuple[Any, torch.Tensor]:
        """The pipeline and the latents its network first sees for an image→image or inpaint
        request (one image, in the form the network takes: √ᾱ·x0 + √(1−ᾱ)·ε, or a flow's
        (1−σ)·x0 + σ·ε)."""
        if not request.mode.uses_strength:
            raise GenerationError("Only image→image and inpaint start from a noised image.")
        request = request.replace(
            seed=resolve_seed(request.seed), batch_size=1, controls=(), upscaler=None, branch=None
        )
        request.validate()
        family = self.models.family(request.model)
        if family is not None:
            request = self._in_size_steps(request, family)
        pipe = self.models.pipeline(request.model, request.mode)
        network = family_runtime.denoiser(pipe)
        first: list[torch.Tensor] = []

        def grab(module: Any, args: tuple, kwargs: dict) -> None:
            sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
            first.append(sample)
            raise ReachedStep  # nothing runs

        reporter, self._reporter = self._reporter, NullReporter()
        self._cancel = threading.Event()
        handle = network.register_forward_pre_hook(grab, with_kwargs=True, prepend=True)
        try:
            with torch.inference_mode():
                self._run_mode(request, [request.seed], {})
        except ReachedStep:
            pass
        finally:
            handle.remove()
            self._reporter = reporter
        if not first:
            raise GenerationError("This model's image→image did not reach its first step.")
        family = family_of(pipe)
        latents = first[0][:1]  # CFG runs [uncond, cond] on the same latents
        if family.layout != "packed":  # an inpainting UNet also takes the mask and image
            latents = latents[:, : family.latent_channels]
        return pipe, latents

    # -- branches --------------------------------------------------------------------------

    def _prepare_branch(self, request: GenerationRequest, timings: dict[str, float]) -> None:
        """For a branch, the parent's state after the step it continues from: kept from
        the parent's run, or computed again (the parent rebuilt from the branch)."""
        self._resume = None
        if request.branch is None:
            return
        at = request.branch.at_step
        parent = parent_of(request)
        if not takes_over(parent.scheduler, request.scheduler):
            raise GenerationError(
                f"{request.scheduler} cannot take over the steps {parent.scheduler} ran: "
                f"continue with {parent.scheduler} or a sampler of its kind."
            )
        key = fingerprint(parent)
        kept = [self.states.get(key, step) for step in range(1, at + 1)]
        states = [s for s in kept if s is not None]
        if len(states) < at:
            self._reporter.status(f"Computing the first {at} steps of the parent again…", None)
            # taken as the replay made them: a budget too small to keep them still branches
            states = self._replay(parent, at, key, timings)[:at]
        self._resume = _Resume(states, request.branch.noise_seed, request.branch.vary)

    def _replay(
        self, parent: GenerationRequest, at: int, key: str, timings: dict[str, float]
    ) -> list[StepState]:
        """Run the parent's generate stage up to step `at`, unseen: its steps, also kept."""
        reporter, self._reporter = self._reporter, NullReporter()
        stages = self._stages
        self._prepare_branch(parent, timings)  # a branch of a branch: its own parent first
        self._job_key, self._stop_after, self._kept_steps = key, at, []
        try:
            self._run_mode(parent, [parent.seed], timings)
        except ReachedStep:
            pass
        else:
            raise GenerationError(
                f"The parent has fewer than {at + 1} steps: continue from an earlier one."
            )
        finally:
            self._reporter, self._stages = reporter, stages
            self._stop_after = None
        self._reporter.status("", None)
        return self._kept_steps

    # -- modes ----------------------------------------------------------------------------

    def _run_mode(
        self, request: GenerationRequest, seeds: list[int], timings: dict[str, float]
    ) -> list[Image.Image]:
        if request.mode is Mode.UPSCALE:
            assert request.init_image is not None
            return self._upscale(request, [request.init_image.convert("RGB")], seeds, timings)

        pipe = self._timed(
            timings, "load", lambda: self.models.pipeline(request.model, request.mode)
        )
        self._unused = unused_guidance(family_of(pipe), request)
        for message in self._unused.values():
            self._note(message)
        if note := repeated_lora_note(request.prompt):
            self._note(note)
        if not runs_step_prompts(pipe):  # prompt editing, alternating words
            for side, said in (("", request.prompt), ("negative ", request.negative_prompt)):
                if note := unrun_syntax_note(said, side, family_of(pipe)):
                    self._note(note)
        text, tags = split_lora_tags(request.prompt)
        wanted = active_loras(tags)
        self._timed(timings, "loras", lambda: self.models.apply_loras(request.model, wanted))
        named = embeddings.named_in(text, request.negative_prompt)
        if named:
            self.models.apply_embeddings(request.model, named)
        control = None
        if request.controls:  # the mode's ControlNet pipeline, derived from the same model
            pipe, control = self._timed(
                timings, "load", lambda: controlnets.prepare(self.models, request, pipe)
            )
            if control is not None:  # for the metadata: the union types that ran
                self._union_types = control.ran_types(request.controls)
        guidance = guidance_arguments(pipe, request.cfg_scale, request.negative_prompt)
        common = {
            "num_inference_steps": request.steps,
            "num_images_per_prompt": request.batch_size,
            **prompt_arguments(pipe, text, guidance, self._note, self._clip_skip(request)),
            **(control.arguments(request.width, request.height) if control else {}),
        }
        if request.mode is Mode.TEXT_TO_IMAGE:
            call = {**common, "width": request.width, "height": request.height}
            return self._denoise(pipe, request, call, seeds, "generate", timings)

        assert request.init_image is not None
        if request.mode is not Mode.INPAINT:  # an inpaint keeps its picture's size
            size = (request.width, request.height)
            if note := imaging.stretch_note(request.init_image.size, *size):
                self._note(note)
        if request.mode is Mode.EDIT:
            return self._edit(pipe, request, common, seeds, timings)
        if request.mode is Mode.IMAGE_TO_IMAGE:
            init = imaging.fit(request.init_image, request.width, request.height)
            call = {**common, "image": init, "strength": request.strength}
            if "width" in call_parameters(pipe):  # the transformer families ask for the size
                call.update(width=request.width, height=request.height)
            call["num_inference_steps"] = steps_for_strength(request.steps, request.strength)
            return self._denoise(pipe, request, call, seeds, "generate", timings)
        return self._inpaint(pipe, request, common, seeds, timings, control)

    def _edit(
        self,
        pipe: Any,
        request: GenerationRequest,
        common: dict[str, Any],
        seeds: list[int],
        timings: dict[str, float],
    ) -> list[Image.Image]:
        """The instruction applied to the input image, with the reference images the family's
        edit pipeline takes (a list: the input first); every step runs, as in text→image."""
        assert request.init_image is not None
        family = family_of(pipe)
        if len(request.references) > family.edit_references:
            raise GenerationError(_too_many_references(family, len(request.references)))
        image = imaging.fit(request.init_image, request.width, request.height)
        references = [r.convert("RGB") for r in request.references]
        # the pipeline's own limits on its input pictures (Flux.2: 64 pixels a side, an aspect
        # ratio of 8 at most), said in a sentence before any step rather than as its error
        check = getattr(getattr(pipe, "image_processor", None), "check_image_input", None)
        named = [(f"at {image.width}×{image.height}", image)]
        named += [
            (f"with reference image {n} ({r.width}×{r.height})", r)
            for n, r in enumerate(references, 1)
        ]
        for where, picture in named if callable(check) else ():
            try:
                check(picture)
            except ValueError as e:
                reason = str(e).split(". ", 1)[-1].rstrip(".")
                reason = reason[:1].lower() + reason[1:]
                raise RequestError([f"{family.label} cannot edit {where}: {reason}."]) from None
        call = {
            **common,
            "image": [image, *references] if family.edit_references else image,
            "width": request.width,
            "height": request.height,
        }
        if "_auto_resize" in call_parameters(pipe):
            # Kontext would resize the input and the output to sizes of its own (about a
            # megapixel); the input is already fitted to the job's size, which the artist
            # chose: keep both, so the edit lines up with the canvas pixel for pixel
            call.update(_auto_resize=False, max_area=request.width * request.height)
        return self._denoise(pipe, request, call, seeds, "generate", timings)

    def _inpaint(
        self,
        pipe: Any,
        request: GenerationRequest,
        common: dict[str, Any],
        seeds: list[int],
        timings: dict[str, float],
        control: controlnets.ControlCall | None = None,
    ) -> list[Image.Image]:
        assert request.init_image is not None and request.mask is not None
        original = request.init_image.convert("RGB")
        soft_mask = imaging.feathered(request.mask, request.mask_blur)
        box = (0, 0, *original.size)
        if request.inpaint_only_masked:
            aspect = request.width / request.height
            box = imaging.mask_crop_box(soft_mask, request.inpaint_padding, aspect)
        image = imaging.fit(original.crop(box), request.width, request.height)
        mask = (
            request.mask.convert("L")
            .crop(box)
            .resize((request.width, request.height), Image.Resampling.BILINEAR)
        )
        call = {
            **common,
            "image": image,
            "mask_image": mask,
            "strength": request.strength,
            "num_inference_steps": steps_for_strength(request.steps, request.strength),
            "width": request.width,
            "height": request.height,
        }
        if control is not None and request.inpaint_only_masked:  # the control images' crop
            call.update(control.arguments(request.width, request.height, box, original.size))
        if control is not None and control.repaints:  # an inpainting ControlNet's pipeline
            call = control.repainting(call, mask, request.steps)
            if request.strength < 1:
                self._note(
                    f"{family_of(pipe).label}'s inpainting ControlNets repaint the masked area "
                    f"from noise: the strength ({request.strength:g}) does not apply."
                )
        if original.size != (request.width, request.height):  # else the size fields mislead
            self._note(
                "The inpaint keeps the input picture's size ({}×{}): it was painted at "
                "{}×{} and the masked area pasted back.".format(
                    *original.size, request.width, request.height
                )
            )
        painted = self._denoise(pipe, request, call, seeds, "generate", timings)
        return [imaging.paste_into(original, p, box, soft_mask) for p in painted]

    def _upscale(
        self,
        request: GenerationRequest,
        images: list[Image.Image],
        seeds: list[int],
        timings: dict[str, float],
    ) -> list[Image.Image]:
        method = request.upscaler or Upscaler.X4
        results = []
        for image, seed in zip(images, seeds, strict=False):
            if method is Upscaler.HIRES:
                results.extend(self._hires_fix(request, image, seed, timings))
            else:
                results.extend(self._x4(request, image, seed, timings))
        return results

    def _x4(
        self, request: GenerationRequest, image: Image.Image, seed: int, timings: dict[str, float]
    ) -> list[Image.Image]:
        pipe = self._timed(timings, "load", lambda: self.models.upscaler(request.upscale_model))
        card = self.models.card(pipe)
        cfg = float(card.get("default_cfg", request.cfg_scale))
        negative = {"negative_prompt": request.negative_prompt or None}
        wanted = (image.width * 4, image.height * 4)
        # the pipeline cuts its input down to its VAE's multiple (a 30×21 picture gave
        # 112×80): padded with its own edges instead, and the result cut back to ×4 exactly
        image = imaging.pad_to_multiple(image.convert("RGB"), getattr(pipe, "vae_scale_factor", 1))
        made = (image.width * 4, image.height * 4)  # the padded picture's: cut back to `wanted`
        call = {
            **prompt_arguments(pipe, request.prompt, negative, self._note),
            "image": image,
            "num_inference_steps": int(card.get("default_steps", min(request.steps, 50))),
            "guidance_scale": cfg,
            "noise_level": min(request.upscale_noise_level, pipe.config.max_noise_level),
        }
        upscale_request = request.replace(
            scheduler=card.get("default_scheduler", "DDIM"),
            cfg_scale=cfg,
            cfg_rescale=0.0,
            dynamic_thresholding=False,
            width=made[0],  # the decode's size decides VAE tiling
            height=made[1],
        )
        shown = (wanted[0] / made[0], wanted[1] / made[1])
        images = self._denoise(pipe, upscale_request, call, [seed], "upscale", timings, shown)
        if images and images[0].size != wanted:
            images = [picture.crop((0, 0, *wanted)) for picture in images]
            self._stages = [  # the metadata records the size given
                dataclasses.replace(s, width=wanted[0], height=wanted[1])
                if s.name == "upscale"
                else s
                for s in self._stages
            ]
        return images

    def _hires_fix(
        self, request: GenerationRequest, image: Image.Image, seed: int, timings: dict[str, float]
    ) -> list[Image.Image]:
        width, height = image.width * HIRES_FACTOR, image.height * HIRES_FACTOR
        enlarged = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        pipe = self._timed(
            timings, "load", lambda: self.models.pipeline(request.model, Mode.IMAGE_TO_IMAGE)
        )
        control = None
        if controlnets.active(request):  # the ControlNets steer the hires pass too
            if note := controlnets.hires_note(pipe):
                self._note(note)
            else:
                img2img = pipe
                pipe, control = self._timed(
                    timings,
                    "load",
                    lambda: controlnets.prepare(self.models, request, img2img, Mode.IMAGE_TO_IMAGE),
                )
        guidance = guidance_arguments(pipe, request.cfg_scale, request.negative_prompt)
        call = {
            **prompt_arguments(
                pipe, request.prompt, guidance, self._note, self._clip_skip(request)
            ),
            "image": enlarged,
            "strength": request.upscale_strength,
            "num_inference_steps": steps_for_strength(
                request.upscale_steps or request.steps, request.upscale_strength
            ),
            **(control.arguments(width, height) if control else {}),  # the maps at this size
        }
        if "width" in call_parameters(pipe):
            call.update(width=width, height=height)
        hires_request = request.replace(width=width, height=height)
        return self._denoise(pipe, hires_request, call, [seed], "hires", timings)

    def _clip_skip(self, request: GenerationRequest) -> int:
        """The request's CLIP skip where the model reads it (said otherwise: unused_guidance)."""
        return 1 if "clip_skip" in self._unused else request.clip_skip

    def _note(self, message: str) -> None:
        """A note on how the prompt is read (weights a family ignores, text cut)."""
        self._reporter.status(message, None)

    # -- the denoising loop ------------------------------------------------------------

    def _denoise(
        self,
        pipe: Any,
        request: GenerationRequest,
        call: dict[str, Any],
        seeds: list[int],
        stage: str,
        timings: dict[str, float],
        shown: tuple[float, float] = (1.0, 1.0),
    ) -> list[Image.Image]:
        """`shown`: the share of each side of the picture the stage's result keeps, which
        its previews show too."""
        if self._cancel.is_set():
            raise GenerationCancelled
        family = family_of(pipe)
        runs = sampler_for(family, request.scheduler)
        if runs != request.scheduler and stage == "generate":
            self._note(
                f"{family.label} does not run {request.scheduler}: {runs} runs in its place "
                f"(its samplers: {', '.join(family.samplers or SCHEDULER_NAMES)})."
            )
        request = request.replace(scheduler=runs)
        steps = int(call["num_inference_steps"])
        pipe.scheduler = scheduler_for(pipe, request.scheduler, family.is_flow, steps)
        if wants_vae_tiling(self.settings, request.width, request.height):
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()
        network = family_runtime.denoiser(pipe)
        tap = GuidanceTap(
            GuidanceSettings(
                cfg_scale=float(call.get("guidance_scale", request.cfg_scale)),
                cfg_rescale=request.cfg_rescale if family.guidance.cfg_rescale else 0.0,
                dynamic_thresholding=request.dynamic_thresholding,
                threshold_percentile=request.threshold_percentile,
                threshold_max=request.threshold_max,
            ),
            denoised_for(pipe.scheduler),
            cancel=self._cancel,
            batched_cfg=family.guidance.kind == "cfg",
            copy_output=speedups.is_compiled(network)
            and speedups.replays_graphs(self.settings, self.models.device),
            # the classifier reads the model's own latents: not the ×4 upscaler's
            classifier=classifier_guidance.for_request(request) if stage != "upscale" else None,
        )
        recorder = self._recorder(stage, tap, len(seeds))
        legacy_callback = not _has_step_end_callback(pipe)
        on_step = StepReports(
            pipe,
            tap,
            self._previewer(pipe, request.width, request.height),
            self.settings.preview_every,
            stage,
            self._reporter,
            self._cancel,
            legacy_steps=call["num_inference_steps"] if legacy_callback else None,
            steps_before=recorder.resume_after - 1 if recorder and recorder.resume else 0,
            shown=shown,
        )
        if legacy_callback:
            call["callback"] = lambda i, t, latents: on_step(i, latents)
            call["callback_steps"] = 1
        else:
            # prompt editing and alternating words: each step gets its own prompt, A1111's
            # schedule over the sampler's steps (a second-order one's count twice, as there)
            text, _ = split_lora_tags(request.prompt)
            order = getattr(pipe.scheduler, "order", 1)
            prompts = step_prompts(
                pipe, text, request.negative_prompt, call, steps * order, self._clip_skip(request)
            )
            if prompts is not None:
                call["callback_on_step_end_tensor_inputs"] = ["latents", *prompts.tensor_inputs]

            def on_step_end(p: Any, i: int, t: Any, given: dict[str, Any]) -> dict[str, Any]:
                on_step(i, given.get("latents"))
                if prompts is None:
                    return {}
                return prompts.after_step(i + 1, given, p.do_classifier_free_guidance)

            call["callback_on_step_end"] = on_step_end

        self._announce_compilation(pipe, request)
        started = time.perf_counter()
        self._running_recorder = recorder
        try:
            images = self._tapped_call(pipe, tap, call, seeds, request)
        except (ReachedStep, GenerationCancelled):
            self._keep_steps(recorder)  # a cancelled job's steps can be continued too
            raise
        except Exception as error:
            if not speedups.is_compiler_error(error) or not self.models.uncompile():
                raise
            # The compiler failed (no C++ compiler or Triton, an unsupported operation): the
            # eager UNet computes the same picture, only slower.
            log.warning("the compiled UNet failed; running it uncompiled", exc_info=True)
            self._reporter.status("Compilation failed: generating without it…", None)
            images = self._tapped_call(pipe, tap, call, seeds, request)
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started
        self._keep_steps(recorder)
        self._record_stage(stage, request, call, images)
        return images

    def _recorder(self, stage: str, tap: GuidanceTap, images: int) -> StepRecorder | None:
        """The generate stage of a one-image job keeps its steps; a branch's continues."""
        if stage != "generate" or images != 1:
            return None
        resume = self._resume
        return StepRecorder(
            tap,
            record=self._job_key is not None,
            resume=resume.states[-1] if resume else None,
            resume_after=len(resume.states) if resume else 0,
            noise_seed=resume.noise_seed if resume else None,
            vary=resume.vary if resume else 0.0,
            stop_after=self._stop_after,
        )

    def _keep_steps(self, recorder: StepRecorder | None) -> None:
        self._running_recorder = None
        if recorder is None or self._job_key is None:
            return
        shared = self._resume.states if self._resume is not None else []
        self._kept_steps = [*shared, *recorder.states]
        self.states.put(self._job_key, self._kept_steps)

    def _record_stage(
        self, stage: str, request: GenerationRequest, call: dict[str, Any], images: list[Any]
    ) -> None:
        """What ran, for the metadata (a batch's stages run once per image: kept once)."""
        if any(s.name == stage for s in self._stages) or not images:
            return
        scheduled = steps = int(call["num_inference_steps"])
        strength = call.get("strength")
        if strength is not None:  # image→image runs the tail of the schedule
            steps = max(1, min(int(steps * strength), steps))
        self._stages.append(
            Stage(
                name=stage,
                model=request.upscale_model if stage == "upscale" else request.model,
                scheduler=request.scheduler,
                steps=steps,
                cfg_scale=float(call.get("guidance_scale", call.get("true_cfg_scale", 0.0))),
                width=images[0].width,
                height=images[0].height,
                strength=strength,
                noise_level=call.get("noise_level"),
                union_types=self._union_types if stage == "generate" else None,
                scheduled=scheduled if strength is not None else None,
            )
        )

    def _announce_compilation(self, pipe: Any, request: GenerationRequest) -> None:
        """A compiled UNet compiles again for each new shape, before its first step: say so,
        or the first step seems to hang."""
        network = family_runtime.denoiser(pipe)
        if not speedups.is_compiled(network):
            return
        batch = request.batch_size * (2 if request.cfg_scale > 1 else 1)  # CFG doubles it
        shape = (id(network), request.width, request.height, batch)
        if shape not in self._compiled_shapes:
            self._compiled_shapes.add(shape)
            self._reporter.status(
                "Compiling the UNet for this size: the first image may take longer…", None
            )

    def _tapped_call(
        self,
        pipe: Any,
        tap: GuidanceTap,
        call: dict[str, Any],
        seeds: list[int],
        request: GenerationRequest,
    ) -> list[Image.Image]:
        hooks = tap.attach(family_runtime.denoiser(pipe), pipe.scheduler)
        hooks += controlnets.steady_noise(pipe, call)
        recorder = self._running_recorder
        if recorder is not None:
            try:
                hooks += recorder.attach(pipe)
            except BranchUnsupported:
                for hook in hooks:
                    hook.remove()
                raise GenerationError(
                    f"{family_of(pipe).label} in this mode cannot continue from a step."
                ) from None
        try:
            return self._call_with_memory_fallback(pipe, call, seeds, request)
        except SamplerTakeOverFailed:
            parent = parent_of(request).scheduler
            raise GenerationError(
                f"{request.scheduler} takes other steps than {parent} on this model: "
                f"continue with {parent}."
            ) from None
        finally:
            for hook in hooks:
                hook.remove()

    def _previewer(
        self, pipe: Any, width: int, height: int, method: str | None = None
    ) -> Previewer:
        """The previewer of a job at this size: the settings' method unless told another.
        Kept on the pipeline for its VAE: reading the projection and preparing its weights
        would cost every run what a tiny model's step costs."""
        method = method or self.settings.preview_method
        kept: dict[tuple[Any, ...], tuple[Any, Previewer]]
        kept = pipe.__dict__.setdefault("_studio_previewers", {})
        key = (method, width, height)
        vae, found = kept.get(key, (None, None))
        if found is not None and vae is pipe.vae:  # the VAE's projection: not another's
            return found
        coefficients = coefficients_for(pipe) if method == "linear" else None
        layout = family_of(pipe).layout
        if len(kept) > 8:  # sizes come and go: keep a few
            kept.clear()
        found = Previewer(
            method,
            decode=lambda latents: family_runtime.vae_decode(pipe.vae, latents, layout),
            coefficients=coefficients,
            unpack=lambda latents: family_runtime.unpack(pipe, latents, width, height),
            tokens=family_runtime.token_grid(pipe, width, height),
        )
        kept[key] = (pipe.vae, found)
        return found

    def _call_with_memory_fallback(
        self, pipe: Any, call: dict[str, Any], seeds: list[int], request: GenerationRequest
    ) -> list[Image.Image]:
        """Denoise and decode; out of GPU memory, once more with every memory saver on."""
        try:
            return self._call(pipe, call, seeds, request)
        except torch.cuda.OutOfMemoryError:
            log.warning("out of memory; retrying with attention slicing and VAE tiling")
        # Out of the except block, so the failed attempt's tensors can really be freed.
        self.models._empty_cache()
        self._reporter.status("Out of memory: retrying with memory savers on…", None)
        pipe.enable_attention_slicing()
        pipe.vae.enable_tiling()
        try:
            return self._call(pipe, call, seeds, request)
        except torch.cuda.OutOfMemoryError:
            pass
        finally:
            self.models.set_attention(pipe)  # slicing was only for the run that needed it
        self.models._empty_cache()
        raise GenerationError(
            "The GPU ran out of memory even with memory savers on: try a smaller size or batch."
        )

    def _call(
        self, pipe: Any, call: dict[str, Any], seeds: list[int], request: GenerationRequest
    ) -> list[Image.Image]:
        # One CPU generator per image: image k of a batch is seed+k run alone, on any device;
        # made afresh for every attempt, so a retry gives the pixels its seed promises.
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if self._running_recorder is not None:
            self._running_recorder.begin(generators)
        latents = pipe(**call, generator=generators, output_type="latent", return_dict=False)[0]
        if self._cancel.is_set():
            raise GenerationCancelled
        return self._decode(pipe, latents, request.width, request.height)

    @staticmethod
    def _decode(pipe: Any, latents: torch.Tensor, width: int, height: int) -> list[Image.Image]:
        """The pictures of the final latents; never a black or flat picture made of NaNs
        (fp16 VAEs overflow, extreme guidance diverges): a half-precision decode that gives
        NaN is done again in float32, and what stays NaN fails the job with a sentence."""
        if not _finite(latents):
            raise GenerationError(LATENTS_NOT_A_NUMBER)
        vae = pipe.vae
        # Only pipelines that upcast their own VAE (SDXL, the x4 upscaler) need it; SD 1.x/2.x
        # decode in fp16, and doing otherwise would cost time the bare pipeline does not spend.
        dtype = family_runtime.dtype_of(vae)
        needs_upcast = (
            dtype == torch.float16
            and getattr(vae.config, "force_upcast", False)
            and hasattr(pipe, "upcast_vae")
        )
        image = _vae_decode(pipe, latents, width, height, float32=needs_upcast)
        if not _finite(image):
            if dtype == torch.float32:
                raise GenerationError(DECODE_NOT_A_NUMBER)
            log.warning("the VAE's decode in %s gave NaN: decoding in float32", dtype)
            image = _vae_decode(pipe, latents, width, height, float32=True)
            if not _finite(image):
                raise GenerationError(DECODE_NOT_A_NUMBER)
        return pipe.image_processor.postprocess(image, output_type="pil")

    @staticmethod
    def _timed(timings: dict[str, float], key: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = action()
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started
        return result


@dataclass(frozen=True)
class _Resume:
    """A branch's start: the parent's states up to the step it continues after."""

    states: list[StepState]
    noise_seed: int | None
    vary: float = 0.0


LATENTS_NOT_A_NUMBER = (
    "The denoising went out of range (not a number) and would have given a black picture: "
    "lower the CFG scale, or turn off CFG rescale or dynamic thresholding, and try again."
)
DECODE_NOT_A_NUMBER = (
    "The model's VAE could not decode this picture (not a number) even at full precision: "
    "try another seed or a lower CFG scale."
)


def _finite(values: torch.Tensor) -> bool:
    """Whether no value is NaN or infinite: a NaN or an infinity makes the sum one (they
    never cancel out), and a sum is one pass where isfinite().all() was two, and 40 times
    slower on a CPU (6.5 ms for a 1024² picture). Summed in float32: a half-precision sum of
    a million ordinary values could overflow."""
    return math.isfinite(values.sum(dtype=torch.float32))


def _vae_decode(
    pipe: Any, latents: torch.Tensor, width: int, height: int, float32: bool
) -> torch.Tensor:
    """The VAE's decode of the pipeline's latent output, in float32 for this call when
    asked (then back to its own dtype)."""
    vae = pipe.vae
    dtype = family_runtime.dtype_of(vae)
    upcast = float32 and dtype != torch.float32
    if upcast:
        vae.to(torch.float32)
    try:
        return family_runtime.decode_output(pipe, latents, width, height)
    finally:
        if upcast:
            vae.to(dtype)


def steps_for_strength(steps: int, strength: float) -> int:
    """Schedule length for image→image: diffusers runs int(steps × strength) of them, so a
    low strength with few steps would run none; stretch the schedule to run at least one."""
    if strength <= 0:
        return steps
    return min(max(steps, math.ceil(1 / strength)), max(steps, MAX_STEPS))


def _has_step_end_callback(pipe: Any) -> bool:
    return "callback_on_step_end" in call_parameters(pipe)


def guidance_arguments(pipe: Any, scale: float, negative_prompt: str) -> dict[str, Any]:
    """The pipeline arguments of the studio's guidance scale and negative prompt, as the
    model's family is guided: batched CFG, true CFG (two calls, only with a negative
    prompt), a distilled guidance input, or none."""
    guidance = family_of(pipe).guidance
    negative = negative_prompt or None
    if guidance.kind == "cfg":
        return {"guidance_scale": scale, "negative_prompt": negative}
    if guidance.kind == "true_cfg":
        if "true_cfg_scale" in call_parameters(pipe):
            return {"true_cfg_scale": scale, "negative_prompt": negative or " "}
        return {"guidance_scale": scale, "negative_prompt": negative}  # Chroma: CFG by name
    if guidance.kind == "cfg_list":
        # Z-Image's pipelines guide as cond + s·(cond − uncond), CFG only for s > 0: the
        # artist's CFG scale (uncond + cfg·(cond − uncond), as every other tool) less one
        return {"guidance_scale": max(0.0, scale - 1.0), "negative_prompt": negative}
    if guidance.kind == "distilled":
        return {"guidance_scale": scale}
    return {"guidance_scale": 0.0} if "guidance_scale" in call_parameters(pipe) else {}


_UNUSED_VALUES = {"negative_prompt": "", "cfg_rescale": 0.0, "clip_skip": 1}


def unused_guidance(family: Any, request: GenerationRequest) -> dict[str, str]:
    """The request's guidance fields that the model does not use, each with the sentence that
    says so: a negative prompt (a family with no negative prompt, or CFG at 1 or below, which
    runs without one) and CFG rescale (only batched CFG has the two halves it rescales). The
    metadata leaves them out: it records what ran. A negative prompt the ×4 upscaler after
    the model takes is used, and kept."""
    unused: dict[str, str] = {}
    guidance = family.guidance
    if request.mode is Mode.UPSCALE:
        return unused
    if request.negative_prompt.strip() and request.upscaler is not Upscaler.X4:
        if not guidance.negative_prompt:
            unused["negative_prompt"] = f"{family.label} takes no negative prompt: it is not used."
        elif request.cfg_scale <= 1:
            unused["negative_prompt"] = (
                f"At CFG scale {request.cfg_scale:g} the negative prompt does nothing (guidance "
                "uses it above 1): it is not used."
            )
    if request.cfg_rescale and not guidance.cfg_rescale:
        unused["cfg_rescale"] = f"{family.label} has no CFG rescale: it is not used."
    if request.clip_skip > 1 and family.name not in CLIP_SKIP_FAMILIES:
        unused["clip_skip"] = (
            f"{family.label} reads no CLIP skip (A1111 applies it to SD 1.x): it is not used."
        )
    return unused


def sampler_for(family: Any, name: str) -> str:
    """The sampler a run uses: the one asked for, or its closest relative the family runs."""
    offered = family.samplers or SCHEDULER_NAMES
    if name in offered or (not family.samplers and name in FAST_SCHEDULERS):
        return name  # the SD families also run the fast settings' samplers (LCM, trailing)
    return closest_scheduler(name, offered) or offered[0]


def _too_many_references(family: Any, given: int) -> str:
    if family.edit_references == 0:
        return f"{family.label} edits one image: remove the {given} reference image(s)."
    return (
        f"{family.label} takes at most {family.edit_references} reference images besides "
        f"the input, not {given}: remove {given - family.edit_references}."
    )
