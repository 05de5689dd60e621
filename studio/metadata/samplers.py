"""Sampler names as every tool writes them, normalised to AUTOMATIC1111's display names."""

from __future__ import annotations

import re

# AUTOMATIC1111 display names; the studio's scheduler names are a subset of these.
_A1111_SAMPLERS = (
    "Euler a",
    "Euler",
    "LMS",
    "LMS Karras",
    "Heun",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "DPM2 a Karras",
    "DPM++ 2S a",
    "DPM++ 2S a Karras",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ 3M SDE",
    "DPM++ 3M SDE Karras",
    "DPM fast",
    "DPM adaptive",
    "DDIM",
    "DDPM",
    "PNDM",
    "UniPC",
    "DEIS",
    "LCM",
)
_CANONICAL = {name.lower(): name for name in _A1111_SAMPLERS}

# Internal names used by ComfyUI (k-diffusion), InvokeAI, NovelAI and Fooocus, after
# lower-casing and stripping "k_"/"sample_" prefixes, "_gpu" and Karras suffixes.
_SAMPLER_ALIASES = {
    "euler_ancestral": "Euler a",
    "euler_a": "Euler a",
    "eulera": "Euler a",
    "euler": "Euler",
    "lms": "LMS",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm2": "DPM2",
    "kdpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpm_2_a": "DPM2 a",
    "dpm2_a": "DPM2 a",
    "kdpm_2_a": "DPM2 a",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_2s_a": "DPM++ 2S a",
    "dpmpp_2_a": "DPM++ 2S a",
    "dpmpp_2s": "DPM++ 2S a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "pndm": "PNDM",
    # diffusers' PNDM with skipped Runge-Kutta steps is PLMS; the studio calls it PNDM.
    "plms": "PNDM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "unipc": "UniPC",
    "deis": "DEIS",
    "lcm": "LCM",
}

# Only these had a "... Karras" variant in A1111's sampler list.
_KARRAS_CAPABLE = {
    "LMS",
    "DPM2",
    "DPM2 a",
    "DPM++ 2S a",
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 3M SDE",
}


def _sampler_key(name: str) -> tuple[str, bool]:
    """Reduce a tool-specific sampler name to an alias key, noting a Karras suffix."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    for prefix in ("sample_", "k_"):
        key = key.removeprefix(prefix)
    key = key.removesuffix("_gpu")
    karras = False
    for suffix in ("_karras", "_k"):
        if key.endswith(suffix):
            key, karras = key[: -len(suffix)], True
            break
    return key, karras


def normalise_sampler(name: str, scheduler: str | None = None) -> str:
    """Map a sampler name from any tool to its AUTOMATIC1111 display name.

    ``scheduler`` is the separate noise-schedule name some tools write next to the
    sampler (ComfyUI, Fooocus, A1111 >= 1.6 "Schedule type"); only "karras" changes
    the name.  Unknown names come back unchanged.
    """
    text = name.strip()
    karras = (scheduler or "").strip().lower() == "karras"
    canonical = _CANONICAL.get(text.lower())
    if canonical is None:
        key, suffix_karras = _sampler_key(text)
        canonical = _SAMPLER_ALIASES.get(key)
        karras = karras or suffix_karras
    if canonical is None:
        return name
    if karras and canonical in _KARRAS_CAPABLE:
        return f"{canonical} Karras"
    return canonical
