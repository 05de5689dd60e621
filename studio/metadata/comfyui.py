"""ComfyUI's API graph (``prompt``) and UI ``workflow`` JSON: the parameters of a sampler node."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from studio.metadata.parameters import (
    MAX_DIGITS,
    ImageParameters,
    Unreadable,
    load_json,
    stringify,
    to_float,
    to_int,
    to_text,
)
from studio.metadata.samplers import normalise_sampler

Graph = dict[str, dict[str, Any]]

_SAMPLER_CLASSES = frozenset(
    {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
)
_TEXT_INPUTS = ("text", "text_g", "text_l", "t5xxl", "clip_l", "prompt")
_STRING_INPUTS = ("text", "string", "value", "prompt", "text_g", "String", "STRING")
# Links a conditioning search must not wander into (they lead to models and images).
_NOT_CONDITIONING = frozenset(
    {
        "clip",
        "model",
        "vae",
        "clip_vision",
        "clip_vision_output",
        "image",
        "images",
        "pixels",
        "mask",
        "control_net",
        "latent_image",
        "samples",
        "style_model",
        "upscale_model",
        "noise",
        "sampler",
        "sigmas",
        "guider",
    }
)
_MAX_DEPTH = 64
# Bounds that keep reading linear in the graph's size whatever its shape: a graph of many
# samplers whose conditioning fans out widely cost seconds, then minutes, without them.
_MAX_SAMPLERS = 32  # samplers examined (in node order); the first complete one wins anyway
_MAX_NODES = 4 * _MAX_DEPTH  # nodes visited behind one conditioning link
_MAX_INPUTS = 16 * _MAX_NODES  # node inputs looked at behind one conditioning link


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
    )


def _inputs(node: Any) -> dict[str, Any]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _linked(graph: Graph, value: Any) -> dict[str, Any] | None:
    if not _is_link(value):
        return None
    node = graph.get(str(value[0]))
    return node if isinstance(node, dict) else None


def _node_order(node_id: str) -> tuple[int, tuple[int, ...], str]:
    """Ascending node id ("graph order"); ids like "12:3" come from group nodes."""
    parts = node_id.split(":")
    if all(part.isdigit() and len(part) <= MAX_DIGITS for part in parts):
        return 0, tuple(int(part) for part in parts), ""
    return 1, (), node_id


def _is_sampler(node: dict[str, Any]) -> bool:
    class_type = str(node.get("class_type", ""))
    if class_type in _SAMPLER_CLASSES:
        return True
    inputs = _inputs(node)
    return "sampler" in class_type.lower() and ("positive" in inputs or "guider" in inputs)


def _resolve_string(graph: Graph, value: Any, depth: int = 0) -> str | None:
    """A text input's value, following links to primitive/string nodes."""
    if isinstance(value, str):
        return value
    node = _linked(graph, value)
    if node is None or depth > _MAX_DEPTH:
        return None
    inputs = _inputs(node)
    for key in _STRING_INPUTS:
        if key in inputs:
            return _resolve_string(graph, inputs[key], depth + 1)
    return None


def _encoder_texts(graph: Graph, node: dict[str, Any]) -> list[str] | None:
    """Texts of a text-encoder node, or None when the node is not one."""
    inputs = _inputs(node)
    keys = [key for key in _TEXT_INPUTS if key in inputs]
    if not keys:
        return None
    texts: list[str] = []
    for key in keys:
        text = (_resolve_string(graph, inputs[key]) or "").strip()
        if text and text not in texts:
            texts.append(text)
    return texts


def _conditioning_texts(graph: Graph, link: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Prompt texts behind a conditioning link, through combine/concat/area nodes.

    Returns the texts in link order and the text-encoder nodes they came from.
    """
    texts: list[str] = []
    encoders: list[dict[str, Any]] = []
    seen: set[str] = set()
    stack = [link]
    budget = _MAX_INPUTS
    while stack and len(seen) < _MAX_NODES and budget > 0:
        current = stack.pop()
        if not _is_link(current) or str(current[0]) in seen:
            continue
        seen.add(str(current[0]))
        node = _linked(graph, current)
        if node is None:
            continue
        found = _encoder_texts(graph, node)
        if found is not None:
            encoders.append(node)
            texts.extend(text for text in found if text not in texts)
            continue
        links = []
        for key, value in itertools.islice(_inputs(node).items(), budget):
            if key not in _NOT_CONDITIONING and _is_link(value) and str(value[0]) not in seen:
                links.append(value)
        budget -= len(_inputs(node))
        stack.extend(reversed(links))
    return texts, encoders


def _scalar(graph: Graph, node: dict[str, Any], keys: tuple[str, ...], via: tuple[str, ...]) -> Any:
    """A setting of a sampler node, looked up in the node itself, through a link in
    the setting itself (seed primitives), or in helper nodes (SamplerCustomAdvanced
    keeps cfg in its guider, steps in its sigmas, the seed in its noise)."""
    inputs = _inputs(node)
    for key in keys:
        if key in inputs:
            value = inputs[key]
            target = _linked(graph, value)
            if target is None:
                return value
            target_inputs = _inputs(target)
            for inner in (*keys, "value", "seed", "int", "float", "number", "string"):
                if inner in target_inputs and not _is_link(target_inputs[inner]):
                    return target_inputs[inner]
            return None
    for name in via:
        helper = _linked(graph, inputs.get(name))
        if helper is not None:
            found = _scalar(graph, helper, keys, ())
            if found is not None:
                return found
    return None


def _follow_chain(
    graph: Graph, start: Any, link_key: str, stop: Callable[[dict[str, Any]], Any]
) -> Any:
    """Walk ``link_key`` links from ``start`` until ``stop`` returns something."""
    node = _linked(graph, start)
    for _ in range(_MAX_DEPTH):
        if node is None:
            return None
        found = stop(node)
        if found is not None:
            return found
        node = _linked(graph, _inputs(node).get(link_key))
    return None


def _checkpoint_name(node: dict[str, Any]) -> str | None:
    inputs = _inputs(node)
    for key in ("ckpt_name", "unet_name", "model_name", "model_path"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    return None


def _latent_size(graph: Graph, link: Any) -> tuple[int | None, int | None]:
    """Size from an empty-latent (or explicit resize) node; None for encoded images."""

    def size(node: dict[str, Any]) -> tuple[int, int] | None:
        inputs = _inputs(node)
        width, height = to_int(inputs.get("width")), to_int(inputs.get("height"))
        if width and height and width > 0 and height > 0:
            return width, height
        if "scale_by" in inputs or "upscale_method" in inputs:
            return (0, 0)  # rescaled by a factor: the size is not written down
        return None

    found = _follow_chain(graph, link, "samples", size)
    if not found or found == (0, 0):
        return None, None
    return found


def _input_image(graph: Graph, link: Any) -> bool:
    """Whether a sampler's latent was encoded from a picture (a VAEEncode's "pixels", through
    latent resizes): not one made empty or sampled before (a second pass)."""
    return bool(_follow_chain(graph, link, "samples", lambda n: "pixels" in _inputs(n) or None))


def _input_mask(graph: Graph, link: Any) -> bool:
    """Whether a sampler's latent carries a painted mask (VAEEncodeForInpaint,
    SetLatentNoiseMask, InpaintModelConditioning on its way): the job was an inpaint."""
    return bool(_follow_chain(graph, link, "samples", lambda n: "mask" in _inputs(n) or None))


def _clip_skip(graph: Graph, encoder: dict[str, Any]) -> str | None:
    def layer(node: dict[str, Any]) -> int | None:
        return to_int(_inputs(node).get("stop_at_clip_layer"))

    stop_at = _follow_chain(graph, _inputs(encoder).get("clip"), "clip", layer)
    return str(-stop_at) if stop_at is not None and stop_at < 0 else None


def _sampler_links(graph: Graph, node: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(positive, negative, model) links of a sampler, looking into a guider if any."""
    inputs = _inputs(node)
    guider = _inputs(_linked(graph, inputs.get("guider")))
    positive = inputs.get("positive", guider.get("positive", guider.get("conditioning")))
    negative = inputs.get("negative", guider.get("negative"))
    return positive, negative, inputs.get("model", guider.get("model"))


def _from_sampler(graph: Graph, node: dict[str, Any]) -> ImageParameters:
    p = ImageParameters(source="comfyui")
    positive, negative, model = _sampler_links(graph, node)
    positive_texts, encoders = _conditioning_texts(graph, positive)
    p.prompt = "\n".join(positive_texts)
    p.negative_prompt = "\n".join(_conditioning_texts(graph, negative)[0])
    p.seed = to_int(_scalar(graph, node, ("seed", "noise_seed"), ("noise",)))
    p.steps = to_int(_scalar(graph, node, ("steps",), ("sigmas",)))
    p.cfg_scale = to_float(_scalar(graph, node, ("cfg",), ("guider",)))
    sampler_name = to_text(_scalar(graph, node, ("sampler_name",), ("sampler",)))
    scheduler = to_text(_scalar(graph, node, ("scheduler",), ("sigmas",)))
    p.sampler = normalise_sampler(sampler_name, scheduler) if sampler_name else None
    denoise = to_float(_scalar(graph, node, ("denoise",), ("sigmas",)))
    p.strength = denoise if denoise is not None and 0 <= denoise < 1 else None
    p.width, p.height = _latent_size(graph, _inputs(node).get("latent_image"))
    p.model = _follow_chain(graph, model, "model", _checkpoint_name)
    if scheduler:
        p.extras["Scheduler"] = scheduler
    for key, label in (("start_at_step", "Start at step"), ("end_at_step", "End at step")):
        value = _inputs(node).get(key)
        if value is not None and not _is_link(value):
            p.extras[label] = stringify(value)
    clip_skip = _clip_skip(graph, encoders[0]) if encoders else None
    if clip_skip:
        p.extras["Clip skip"] = clip_skip
    latent = _inputs(node).get("latent_image")
    if _input_image(graph, latent):
        p.extras["Input image"] = "yes"  # the strength is an image→image one: the file lacks it
    if _input_mask(graph, latent):
        p.extras["Input mask"] = "yes"  # an inpaint: the file lacks the mask too
        if denoise == 1:  # the whole masked area repainted: the studio's strength 1
            p.strength = 1.0
    return p


def _completeness(p: ImageParameters) -> int:
    fields = (p.prompt or None, p.seed, p.steps, p.cfg_scale, p.sampler)
    return sum(value is not None for value in fields)


def _from_comfy_graph(graph: Graph) -> ImageParameters | None:
    """The first sampler (in node id order) that carries every main setting."""
    ids = sorted((k for k, v in graph.items() if isinstance(v, dict)), key=_node_order)
    samplers = [node_id for node_id in ids if _is_sampler(graph[node_id])]
    best: ImageParameters | None = None
    for node_id in samplers[:_MAX_SAMPLERS]:
        candidate = _from_sampler(graph, graph[node_id])
        if best is None or _completeness(candidate) > _completeness(best):
            best = candidate
        if _completeness(candidate) == 5:
            break
    if best is not None and len(samplers) > 1:
        best.extras["Sampler nodes"] = str(len(samplers))
    return best


# Widget order of common nodes in the UI ``workflow`` format, needed to turn its
# positional ``widgets_values`` back into named inputs.
_WIDGETS = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", "cfg"),
    "RandomNoise": ("noise_seed",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "CFGGuider": ("cfg",),
    "CLIPTextEncode": ("text",),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
}
# The value ComfyUI stores after a seed widget ("control after generate").
_SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}


def _widget_inputs(class_type: str, values: Any) -> dict[str, Any]:
    if isinstance(values, dict):
        return dict(values)
    names = _WIDGETS.get(class_type)
    if not names or not isinstance(values, list):
        return {}
    inputs: dict[str, Any] = {}
    queue = list(values)
    for name in names:
        if not queue:
            break
        inputs[name] = queue.pop(0)
        is_control = bool(queue) and (isinstance(queue[0], bool) or queue[0] in _SEED_CONTROLS)
        if name in ("seed", "noise_seed") and is_control:
            queue.pop(0)
    return inputs


def _workflow_links(workflow: dict[str, Any]) -> dict[Any, list[Any]]:
    """link id -> [origin node id, origin slot], for list and dict link records."""
    links: dict[Any, list[Any]] = {}
    for record in workflow.get("links") or []:
        if isinstance(record, list) and len(record) >= 3:
            links[record[0]] = [str(record[1]), record[2]]
        elif isinstance(record, dict) and "id" in record:
            links[record["id"]] = [str(record.get("origin_id")), record.get("origin_slot")]
    return links


def _workflow_to_graph(workflow: Any) -> Graph:
    """Convert the UI ``workflow`` JSON into the API graph shape the reader knows."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return {}
    links = _workflow_links(workflow)
    graph: Graph = {}
    for node in workflow["nodes"]:
        if not isinstance(node, dict) or "id" not in node:
            continue
        class_type = str(node.get("type", ""))
        inputs = _widget_inputs(class_type, node.get("widgets_values"))
        for slot in node.get("inputs") or []:
            # Widgets turned into inputs keep their value in widgets_values.
            if isinstance(slot, dict) and "widget" not in slot and slot.get("link") in links:
                inputs[str(slot.get("name"))] = links[slot["link"]]
        graph[str(node["id"])] = {"class_type": class_type, "inputs": inputs}
    return graph


def from_comfyui(chunks: Mapping[str, str]) -> ImageParameters | None:
    if "prompt" not in chunks and "workflow" not in chunks:
        return None
    graph = load_json(chunks.get("prompt", ""))
    if isinstance(graph, dict):
        found = _from_comfy_graph(graph)
        if found is not None:
            return found
    workflow = load_json(chunks.get("workflow", ""))
    found = _from_comfy_graph(_workflow_to_graph(workflow))
    if found is not None:
        return found
    if isinstance(graph, dict) or isinstance(workflow, dict):
        raise Unreadable("ComfyUI", "its workflow has no sampler node")
    if "prompt" in chunks and chunks["prompt"].lstrip().startswith("{"):
        raise Unreadable("ComfyUI", "its JSON is broken")
    return None  # a plain "prompt" text chunk from some other tool
