"""Finding and loading models: embedded names, hub ids, diffusers folders, checkpoint files.

A model's weights are loaded once. Image→image and inpainting pipelines are derived from
the loaded text→image pipeline with `from_pipe`, which shares every component, so
switching mode costs no load. `weight_loads` counts real loads so tests can hold us to it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core import families, memory_policy
from studio.core.catalog import (
    ModelError,
    model_family,
    model_role,
    read_model_card,
    resolve,
    shared_components,
)
from studio.core.model_files import KNOWN_LIBRARIES, check_model_folder, safetensors_keys
from studio.core.paths import log_file
from studio.core.request import Mode
from studio.core.settings import EngineSettings
from studio.core.text import printable
from studio.engine import controlnets, family_runtime, qwen_vl, speedups
from studio.engine.devices import memory_plan, pick_device, pick_dtype
from studio.engine.embeddings import EmbeddingSet
from studio.engine.family_runtime import family_of
from studio.engine.loras import ActiveLora, LoraSet

log = logging.getLogger(__name__)

# What the manager keeps on each pipeline it hands out, with the value of a pipeline built
# elsewhere: the model card, its latent family, and its folder (preview coefficients).
_STUDIO_ATTRIBUTES: dict[str, Any] = {
    "_studio_card": {},
    "_studio_family": None,
    "_studio_folder": None,
    "_studio_kind": None,  # the Family (studio.core.families) it belongs to
    # where its networks run, offloaded or not (diffusers' _execution_device walks every
    # module to find out: milliseconds a call)
    "_studio_device": None,
}

StatusCallback = Callable[[str, float | None], None]  # message, fraction done (None: unknown)

_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def check_checkpoint_is_safe(path: Path) -> list[str]:
    """Refuse pickled checkpoints that need code execution to load; the tensor names of
    the ones that load with weights_only=True ([] for other files)."""
    if path.suffix.lower() not in _PICKLE_SUFFIXES:
        return []
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as e:
        log.info("refused %s: %s", path, e)
        raise ModelError(
            f"'{path.name}' is a pickled checkpoint that could run code when loaded, so the "
            "studio refuses it: use a .safetensors version of this model."
        ) from None
    except (OSError, EOFError) as e:
        raise ModelError(f"'{path.name}' cannot be read ({e.__class__.__name__}).") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    return [k for k in data if isinstance(k, str)] if isinstance(data, dict) else []


def check_safetensors_header(path: Path) -> list[str]:
    """A damaged or half-downloaded .safetensors file fails here, with a sentence to match;
    a good one gives its tensor names (the header only: no weights are read)."""
    try:
        return safetensors_keys(path)
    except (OSError, ValueError, UnicodeDecodeError, OverflowError):
        raise ModelError(
            f"'{printable(path.name)}' is not a readable .safetensors file (damaged or "
            "incompletely downloaded)."
        ) from None


class ModelManager:
    """Owns the loaded generator and upscaler; lives on the engine's worker thread."""

    def __init__(
        self, settings: EngineSettings | None = None, status: StatusCallback | None = None
    ) -> None:
        self.settings = settings or EngineSettings()
        quiet_libraries()
        self.device = pick_device(self.settings.device)
        self.dtype = pick_dtype(self.device, self.settings.dtype)
        self.status = status or (lambda message, fraction: None)
        self.weight_loads = 0
        self.compile_failed = False  # a compiled UNet failed here once: compile no more
        self._base: tuple[str, Any] | None = None  # (spec, text→image pipeline)
        # a mode → its pipeline; ("controlnet", mode, ControlNet ids) → a ControlNet pipeline
        self._derived: dict[Any, Any] = {}
        self._upscaler: tuple[str, Any] | None = None
        self.loras = LoraSet()  # the adapters on the loaded model
        self.embeddings = EmbeddingSet()  # the textual inversions in its text encoders
        self.controlnets = controlnets.ControlNets()  # kept while asked for

    # -- public -------------------------------------------------------------------------

    @property
    def loaded(self) -> str:
        """The spec of the generator loaded, "" when none: a load that failed left none, a
        job that failed after its load kept it."""
        return self._base[0] if self._base else ""

    def family(self, spec: str) -> Any:
        """The family of a model, asked before loading it: the loaded pipeline's when it is
        this model, else read from its files (which costs a run of a tiny model about a
        percent, right after its steps); None for a family the studio does not know."""
        if self._base and self._base[0] == spec:
            return families.by_name(family_of(self._base[1]).name)
        return families.by_name(getattr(model_family(spec), "name", None))

    def pipeline(self, spec: str, mode: Mode) -> Any:
        """The pipeline for a mode, loading the model only if it is not the loaded one."""
        if not (self._base and self._base[0] == spec):
            # a mode its family has no pipeline for is said before minutes of loading
            known = self.family(spec)
            if known is not None and not known.offers(mode.value):
                raise ModelError(_no_such_mode(known, mode))
        base = self._load_base(spec)
        family = family_of(base)
        if family.name != "unknown" and not family.offers(mode.value):
            raise ModelError(_no_such_mode(family, mode))
        if _inpainting_only(base, family) and mode not in (Mode.INPAINT, Mode.UPSCALE):
            raise ModelError(
                f"'{Path(spec).name}' is an inpainting model (its UNet also takes a mask): "
                "paint a mask in Inpaint mode, or pick the model's regular version for "
                f"{mode.label}."
            )
        if mode in (Mode.TEXT_TO_IMAGE, Mode.UPSCALE):
            return base
        if type(base).__name__ == family.pipelines.get(mode.value):
            return base  # the loaded pipeline is that mode's (Kontext, Klein and Qwen edit)
        if mode not in self._derived:
            derived = _derive(base, mode)
            derived.set_progress_bar_config(disable=True)
            # from_pipe shares the components but not our attributes: without the folder and
            # family, image→image, inpaint and the hires pass previewed with SD 1.x's
            # latent→RGB projection instead of the model's own (studio-tiny: colours inverted)
            for name, default in _STUDIO_ATTRIBUTES.items():
                setattr(derived, name, getattr(base, name, default))
            self._derived[mode] = derived
        return self._derived[mode]

    def controlled(self, spec: str, mode: Mode, networks: list[Any]) -> Any:
        """The mode's ControlNet pipeline running these ControlNet models (loaded by
        `self.controlnets`), derived from the loaded model with from_pipe; kept while the
        same ControlNets are asked for."""
        base = self._load_base(spec)
        key = ("controlnet", mode, tuple(map(id, networks)))
        for old in [k for k in self._derived if isinstance(k, tuple) and k[2] != key[2]]:
            del self._derived[old]  # it holds ControlNets no longer asked for
        if key not in self._derived:
            derived = controlnets.derive(base, mode.value, networks)
            derived.set_progress_bar_config(disable=True)
            for name, default in _STUDIO_ATTRIBUTES.items():
                setattr(derived, name, getattr(base, name, default))
            self._derived[key] = derived
        return self._derived[key]

    def apply_loras(self, spec: str, wanted: list[ActiveLora]) -> None:
        """Make exactly these LoRAs active on the model (loaded if it is not); every mode's
        pipeline shares the networks they change."""
        base = self._load_base(spec)
        self.loras.apply(base, wanted, family_of(base).label)

    def apply_embeddings(self, spec: str, paths: list[Path]) -> None:
        """Load the embeddings a prompt names into the model's text encoders (kept after)."""
        base = self._load_base(spec)
        self.embeddings.apply(base, paths, family_of(base).label)

    def adopt(self, spec: str, pipe: Any) -> None:
        """Use an already built text→image pipeline under a name (benchmarks, embedding)."""
        self.unload()
        # a pipeline loaded by a manager keeps its card and folder (preview coefficients)
        for name, default in _STUDIO_ATTRIBUTES.items():
            setattr(pipe, name, getattr(pipe, name, default))
        self._place(pipe)
        self._base = (spec, pipe)

    def upscaler(self, spec: str) -> Any:
        if self._upscaler and self._upscaler[0] == spec:
            return self._upscaler[1]
        self._upscaler = None
        from diffusers import StableDiffusionUpscalePipeline

        self.check_upscaler(spec)
        pipe = self._load(spec, StableDiffusionUpscalePipeline)
        self._upscaler = (spec, pipe)
        return pipe

    @staticmethod
    def check_upscaler(spec: str) -> None:
        """ModelError when `spec` is, by its files, no model of the ×4 upscaler family (said
        before a job's first step, not after its picture is made)."""
        if model_role(spec) in ("generator", "upscaler"):
            raise ModelError(
                f"'{printable(spec)}' is not a ×4 upscaler: upscaling takes a model of the "
                "Stable Diffusion x4 upscaler family (studio-tiny-x4, "
                "stabilityai/stable-diffusion-x4-upscaler)."
            )

    def card(self, pipe: Any) -> dict[str, Any]:
        return getattr(pipe, "_studio_card", {})

    def unload(self) -> None:
        self._base = None
        self._derived.clear()
        self.loras.reset()
        self.embeddings.reset()
        self.controlnets.reset()
        self._upscaler = None
        self._empty_cache()

    # -- loading ------------------------------------------------------------------------

    def _load_base(self, spec: str) -> Any:
        if self._base and self._base[0] == spec:
            return self._base[1]
        # One generator at a time: free the old one before loading the next.
        self._base = None
        self._derived.clear()
        self.loras.reset()
        self.embeddings.reset()
        self._empty_cache()
        from diffusers import DiffusionPipeline

        if model_role(spec) in ("x4 upscaler", "upscaler"):
            raise ModelError(
                f"'{printable(spec)}' is an upscaler: it enlarges images and makes none from a "
                "prompt. Choose a model that makes images, and this one to upscale them."
            )
        pipe = self._load(spec, DiffusionPipeline)
        self._base = (spec, pipe)
        # Derive the other modes now, while the user waits for the load anyway: building a
        # pipeline object takes a few hundred ms, which a mode switch should not cost.
        for mode in (Mode.IMAGE_TO_IMAGE, Mode.INPAINT, Mode.EDIT):
            try:
                self.pipeline(spec, mode)
            except (ModelError, ValueError, TypeError, AttributeError) as e:  # not its mode
                log.info("%s has no %s pipeline: %s", spec, mode.value, e)
        return pipe

    def _load(self, spec: str, pipeline_class: Any) -> Any:
        source = resolve(spec)
        self.status(f"Loading {spec}…", None)
        try:
            if source.kind == "checkpoint":
                path = Path(source.location)
                pipe = self._load_checkpoint(path, pipeline_class, self._dtype_for_file(path))
                folder = None
            else:
                folder = (
                    Path(self._download(source.spec))
                    if source.kind == "hub"
                    else Path(source.location)
                )
                shared = shared_components(folder, read_model_card(folder))
                # before any library reads (or blocks on) a file
                check_model_folder(folder, provided=shared, weights=True)
                for part in {p.parent for p in shared.values()}:
                    check_model_folder(part)
                dtype = self._dtype_for(families.of_folder(folder))
                pipe = pipeline_class.from_pretrained(
                    folder,
                    dtype=dtype,
                    local_files_only=True,  # a download happens in _download, on purpose
                    trust_remote_code=False,  # never run code a model folder brings
                    use_safetensors=True,  # never unpickle weights
                    **_no_safety_checker(folder),
                    **self._components(folder, shared, dtype),
                    **qwen_vl.folder_components(folder),  # Qwen-Image-Edit's: see qwen_vl
                )
        except ModelError:
            raise
        except MemoryError:
            raise ModelError(f"There is not enough memory to load '{spec}'.") from None
        except Exception as e:  # noqa: BLE001 - a library's internals are never the message
            log.exception("loading %s failed", spec)
            raise ModelError(load_failure(spec, e)) from None
        self.weight_loads += 1
        card = read_model_card(folder) if folder else {}
        pipe._studio_card = card
        pipe._studio_family = card.get("family")
        pipe._studio_folder = folder
        family_of(pipe)  # recognised once, from the loaded components
        self._place(pipe)
        self.status(f"{spec} is ready.", 1.0)
        return pipe

    def _components(self, folder: Path, shared: dict[str, Path], dtype: Any) -> dict[str, Any]:
        """The components a folder takes from another, loaded from there as its own
        model_index.json names their classes (diffusers or transformers only)."""
        if not shared:
            return {}
        import importlib

        from studio.core.files import read_json_object

        index = read_json_object(folder / "model_index.json", 1024 * 1024)
        loaded = {}
        for name, part in shared.items():
            library, class_name = index[name]
            if library not in KNOWN_LIBRARIES:  # never a module the folder brings
                raise ModelError(f"'{printable(folder.name)}' names an unknown '{name}'.")
            component = getattr(importlib.import_module(library), class_name)
            loaded[name] = component.from_pretrained(
                part, torch_dtype=dtype, local_files_only=True, use_safetensors=True
            )
        return loaded

    def _load_checkpoint(self, path: Path, pipeline_class: Any, dtype: Any) -> Any:
        """A single file, with no network: studio.engine.single_file says how."""
        from studio.engine import single_file

        return single_file.load(path, pipeline_class, dtype, self.status)

    def _dtype_for(self, family: Any) -> Any:
        """The dtype to load a model of `family` in: bfloat16 on CUDA for the families that
        need it (fp16 overflows their activations) unless a precision was chosen. Chosen
        before loading: a quantised (GGUF) model computes in the dtype it was loaded with,
        and diffusers refuses to cast one afterwards."""
        if family is None or self.device.type != "cuda" or self.settings.dtype is not None:
            return self.dtype
        import torch

        if memory_policy.dtype_for(family.name) == "bfloat16" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return self.dtype

    def _dtype_for_file(self, path: Path) -> Any:
        if self.device.type != "cuda":
            return self.dtype
        from studio.engine import single_file

        try:
            return self._dtype_for(single_file.inspect(path).family)
        except ModelError:
            return self.dtype  # the load says what is wrong with the file

    def _download(self, repo_id: str) -> str:
        """A hub model's local folder: the cache when it has it, else a download of just the
        files a diffusers pipeline loads (not the repo's single-file checkpoints or variants)."""
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        # "models/x" reads as a hub id too: say that it is no folder either
        missing = "is not a folder here, nor in the local cache of the model hub"

        def fetch(action: Callable[..., str], *args: Any, **kwargs: Any) -> str:
            try:
                return action(*args, local_files_only=True, **kwargs)
            except (LocalEntryNotFoundError, FileNotFoundError):
                if offline:
                    raise ModelError(f"'{repo_id}' {missing}, and the studio is offline.") from None
            try:
                return action(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any hub failure becomes one sentence
                log.info("download of %s failed: %r", repo_id, e)
                raise ModelError(
                    f"'{repo_id}' {missing}, and could not be downloaded ({e.__class__.__name__})."
                ) from None

        index = Path(fetch(hf_hub_download, repo_id, "model_index.json"))
        try:
            components = [
                name
                for name, value in json.loads(index.read_text(encoding="utf-8")).items()
                if isinstance(value, list) and value[0] is not None
            ]
        except (OSError, ValueError):
            raise ModelError(f"'{repo_id}' has a broken model_index.json.") from None
        patterns = ["model_index.json"] + [
            f"{c}/*.{ext}" for c in components for ext in ("json", "txt", "model", "safetensors")
        ]
        return fetch(
            snapshot_download,
            repo_id,
            allow_patterns=patterns,
            ignore_patterns=["*.fp16.*", "*non_ema*", "*.ema.*"],
            tqdm_class=_status_tqdm(self.status, repo_id),
        )

    def _place(self, pipe: Any) -> None:
        pipe.set_progress_bar_config(disable=True)
        pipe._studio_device = self.device  # the accelerator, with offloading too
        placement = self._placement(pipe)  # on the CPU and MPS: "gpu", i.e. the device
        if placement == "model_offload":
            pipe.enable_model_cpu_offload(device=self.device)
        elif placement == "group_offload":
            pipe.enable_group_offload(self.device, offload_type="leaf_level", use_stream=True)
        else:
            pipe.to(self.device)
        self.set_attention(pipe)
        network = family_runtime.denoiser(pipe)
        if self.settings.channels_last:
            import torch

            network.to(memory_format=torch.channels_last)
        mode = speedups.compile_mode(self.settings, self.device)
        if mode is not None and not self.compile_failed:
            import torch

            family_runtime.set_denoiser(pipe, torch.compile(network, mode=mode))

    def _placement(self, pipe: Any) -> str:
        """On CUDA, memory_policy's placement for the family and the free memory (the
        settings' CPU offload when set, or a GPU under 5 GB); bfloat16 for the families
        that need it (unless a precision was chosen), and fp8 weights when asked."""
        plan = memory_plan(self.settings, self.device)
        if self.device.type != "cuda":
            return "gpu"
        import torch

        name = family_of(pipe).name
        network = family_runtime.denoiser(pipe)
        quantised = getattr(network, "is_quantized", False)  # GGUF: loaded in its dtype
        # a model whose family was not known before loading (`_dtype_for`) is cast now;
        # diffusers cannot cast a quantised one
        wanted = self._dtype_for(family_of(pipe))
        if wanted == torch.bfloat16 and pipe.dtype == torch.float16 and not quantised:
            pipe.to(dtype=torch.bfloat16)
        if self.settings.fp8_weights and not quantised:  # already smaller than fp8
            network.enable_layerwise_casting(torch.float8_e4m3fn, compute_dtype=network.dtype)
        if self.settings.cpu_offload is not None or plan["cpu_offload"]:
            return "model_offload" if plan["cpu_offload"] else "gpu"
        free_gib = torch.cuda.mem_get_info(self.device)[0] / 2**30
        policy = memory_policy.choose(name, free_gib, self.settings.fp8_weights)
        return policy.placement if policy is not None else "gpu"

    def set_attention(self, pipe: Any) -> None:
        """Attention as the settings place it: sliced when memory asks for it (slicing
        replaces fusion: memory comes first), else fused when asked, else diffusers' own.
        Also what puts it back after a retry with memory savers."""
        if memory_plan(self.settings, self.device)["attention_slicing"]:
            pipe.enable_attention_slicing()
            return
        pipe.disable_attention_slicing()
        if self.settings.fuse_qkv:  # again after a retry: only the processor is put back
            speedups.fuse_attention(speedups.eager(family_runtime.denoiser(pipe)))

    def uncompile(self) -> bool:
        """Run every loaded UNet eager (all of them, the derived pipelines too) and compile
        none of the next models: called when a compiled UNet failed. Whether any was."""
        pipes = [p for _, p in filter(None, (self._base, self._upscaler))]
        unwrapped = [speedups.uncompile(p) for p in [*pipes, *self._derived.values()]]
        self.compile_failed = self.compile_failed or any(unwrapped)
        return any(unwrapped)

    def _empty_cache(self) -> None:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def quiet_libraries() -> None:
    """Progress bars of diffusers and transformers go to a terminal no one sees (we report
    progress ourselves); their messages go to the studio's log, not to stderr."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_warning()
        library.disable_default_handler()
        library.enable_propagation()


def _no_safety_checker(folder: Path) -> dict[str, Any]:
    """Local studios run without the NSFW checker; only pass the override where one exists."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if "safety_checker" in index:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def load_failure(spec: str, error: BaseException) -> str:
    """The sentence for a model the library could not build (its files passed the checks
    of core.model_files, so what is left is what they hold)."""
    name = f"'{printable(Path(spec).name or spec)}'"
    text = str(error).lower()
    if "size mismatch" in text or "shape" in text:
        return (
            f"The weights of {name} do not fit its configuration (files from different models, "
            "or a damaged download): download or copy the model again."
        )
    if "meta" in text or "missing" in text:
        return f"The weights of {name} are incomplete: download or copy the model again."
    if isinstance(error, ArithmeticError | TypeError | ValueError | KeyError | AttributeError):
        return (
            f"The configuration of {name} holds values no model can be built from: it is "
            "damaged, or of a kind the studio does not know."
        )
    return f"{name} could not be loaded; the details are in {log_file()}."


def _status_tqdm(status: StatusCallback, label: str) -> type:
    """A tqdm class that reports download progress through the status callback."""
    from tqdm.auto import tqdm

    class StatusTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the bar
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            result = super().update(n)
            if self.total:
                status(f"Downloading {label}…", min(1.0, self.n / self.total))
            return result

    return StatusTqdm


def _no_such_mode(family: families.Family, mode: Mode) -> str:
    if mode is Mode.EDIT:
        editors = ", ".join(f.label for f in families.all_families() if "edit" in f.pipelines)
        return f"{family.label} models do not edit by instruction: use one that does ({editors})."
    return f"{family.label} models have no {mode.label} mode in diffusers."


def _inpainting_only(base: Any, family: families.Family) -> bool:
    """An SD inpainting model (a 9-channel UNet: noisy latents, mask, masked picture), which
    diffusers runs in its inpainting pipeline only."""
    unet = getattr(base, "unet", None)
    inputs = getattr(getattr(unet, "config", None), "in_channels", 4)
    return family.denoiser == "unet" and inputs == 9 and "inpaint" in family.pipelines


def _derive(base: Any, mode: Mode) -> Any:
    """The pipeline of another mode, sharing every component of the loaded one (from_pipe):
    the family's own class for the mode, else the one diffusers' AutoPipeline maps to."""
    import diffusers

    name = family_of(base).pipelines.get(mode.value)
    if name is not None and hasattr(diffusers, name):
        transformer = getattr(base, "transformer", None)
        if name == "ChromaInpaintPipeline" and "guidance_embeds" not in transformer.config:
            # diffusers 0.42 reads a flag Chroma's config does not have (Chroma has no
            # guidance input): say so, or its inpainting fails for every Chroma model
            transformer.register_to_config(guidance_embeds=False)
        # from_pipe casts the shared components to float32 unless told the dtype
        return getattr(diffusers, name).from_pipe(base, dtype=base.dtype)
    if family_of(base).name != "unknown":
        raise ValueError(f"{family_of(base).label} has no {mode.label} pipeline")
    if mode is Mode.EDIT:
        raise ModelError("This model does not edit by instruction: use an edit model.")
    auto = (
        diffusers.AutoPipelineForImage2Image
        if mode is Mode.IMAGE_TO_IMAGE
        else diffusers.AutoPipelineForInpainting
    )
    return auto.from_pipe(base, dtype=base.dtype)
