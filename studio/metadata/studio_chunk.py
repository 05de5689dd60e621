"""The studio's own files: an A1111 ``parameters`` chunk for everyone, and a ``studio``
chunk with the whole request, so dropping a file back restores everything exactly.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

from PIL import Image, PngImagePlugin

from studio.metadata.a1111 import PARAMETERS_KEY, format_a1111, parse_a1111
from studio.metadata.parameters import (
    ImageParameters,
    Unreadable,
    load_json,
    to_float,
    to_int,
    to_text,
)

STUDIO_KEY = "studio"


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


# JPEG and WebP carry the A1111 text as AUTOMATIC1111 writes it (EXIF UserComment, UTF-16
# big-endian behind the "UNICODE" marker) and the request in an XMP packet of our own.
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
XMP_NAMESPACE = "https://latent.studio/ns/1.0/"
_XMP_REQUEST = re.compile(r"<ls:request>(.*?)</ls:request>", re.DOTALL)


def exif_and_xmp(parameters: ImageParameters, request: dict[str, Any] | None) -> dict[str, bytes]:
    """The `exif` and `xmp` save arguments of a JPEG or WebP studio image."""
    exif = Image.Exif()
    text = format_a1111(parameters)
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + text.encode("utf-16-be")
    found = {"exif": exif.tobytes()}
    if request is not None:
        payload = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
        found["xmp"] = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:ls="{XMP_NAMESPACE}"><ls:request>{html.escape(payload)}'
            "</ls:request></rdf:Description></rdf:RDF></x:xmpmeta>"
        ).encode()
    return found


def request_from_xmp(xmp: Any) -> str | None:
    """The request JSON text our XMP packet holds, if this is one of ours."""
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", errors="replace")
    if not isinstance(xmp, str) or XMP_NAMESPACE not in xmp:
        return None
    match = _XMP_REQUEST.search(xmp)
    return html.unescape(match.group(1)) if match else None


def png_info(parameters: ImageParameters, request: dict[str, Any] | None) -> PngImagePlugin.PngInfo:
    """PNG text chunks for a studio image: A1111 ``parameters`` plus the ``studio`` request."""
    info = PngImagePlugin.PngInfo()
    text = format_a1111(parameters)
    # tEXt is Latin-1 only; iTXt carries UTF-8 and every reader of tEXt also reads it.
    if _is_latin1(text):
        info.add_text(PARAMETERS_KEY, text)
    else:
        info.add_itxt(PARAMETERS_KEY, text)
    if request is not None:
        # default=str: an odd value in the request must not cost the user the image.
        payload = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
        info.add_itxt(STUDIO_KEY, payload)
    return info


def from_studio(chunks: Mapping[str, str]) -> ImageParameters | None:
    raw = chunks.get(STUDIO_KEY)
    if raw is None:
        return None
    request = load_json(raw)
    if not isinstance(request, dict):
        # The caller goes on to the A1111 chunk, which is usually still fine.
        raise Unreadable("Latent Studio", "its JSON is broken")
    p = ImageParameters(source="studio", request=request)
    p.prompt = to_text(request.get("prompt")) or ""
    p.negative_prompt = to_text(request.get("negative_prompt")) or ""
    p.seed = to_int(request.get("seed"))
    p.steps = to_int(request.get("steps"))
    p.cfg_scale = to_float(request.get("cfg_scale"))
    p.sampler = to_text(request.get("scheduler"))
    p.width = to_int(request.get("width"))
    p.height = to_int(request.get("height"))
    p.model = to_text(request.get("model"))
    mode = request.get("mode")
    # Strength means something only where an input image is partly repainted.
    p.strength = to_float(request.get("strength")) if mode in ("img2img", "inpaint") else None
    if PARAMETERS_KEY in chunks:
        # The A1111 text written beside the request says what ran (an Upscale job's steps
        # and model are the upscaler's; a hires pass has its own strength): shown as such.
        written = parse_a1111(chunks[PARAMETERS_KEY])
        for name in ("steps", "cfg_scale", "sampler", "width", "height", "model", "strength"):
            value = getattr(written, name)
            if value is not None:
                setattr(p, name, value)
        p.extras = dict(written.extras)
    return p
