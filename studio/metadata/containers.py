"""Where parameters hide in an image file: PNG text chunks, EXIF (JPEG, WebP) and A1111's
"stealth" bits in the lowest bit of alpha or RGB.
"""

from __future__ import annotations

import zlib

from PIL import Image, PngImagePlugin


def text_chunks(image: Image.Image) -> tuple[dict[str, str], bool]:
    """All text chunks of ``image`` and whether its pixel data decoded cleanly.

    Pillow only sees text written after the image data once the pixels are loaded,
    so a PNG is loaded; a damaged one still yields the chunks read before the damage.
    """
    decoded = True
    chunks = {k: str(v) for k, v in image.info.items() if isinstance(v, str)}
    if isinstance(image, PngImagePlugin.PngImageFile):
        try:
            chunks.update({k: str(v) for k, v in image.text.items()})
        except Exception:
            decoded = False
    comment = image.info.get("comment")
    if isinstance(comment, bytes) and "comment" not in chunks:
        chunks["comment"] = comment.decode("utf-8", errors="replace")
    return chunks, decoded


_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_EXIF_MAKE = 0x010F
_EXIF_MODEL = 0x0110


def _utf16(payload: bytes) -> str:
    """UTF-16 of unknown byte order: a BOM, else the side where ASCII's zeros fall."""
    if payload[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return payload.decode("utf-16", errors="replace")
    sample = payload[:2048]
    zeros_even = sample[0::2].count(0)
    zeros_odd = sample[1::2].count(0)
    codec = "utf-16-be" if zeros_even >= zeros_odd else "utf-16-le"
    return payload[: len(payload) // 2 * 2].decode(codec, errors="replace")


def _decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.rstrip("\0")
    prefix, payload = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        text = _utf16(payload)
    elif prefix == b"JIS\0\0\0\0\0":
        text = payload.decode("shift_jis", errors="replace")
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8):
        text = payload.decode("utf-8", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def exif_chunks(image: Image.Image) -> dict[str, str]:
    """EXIF text as pseudo-chunks: A1111's UserComment, ComfyUI's "prompt:" Make/Model."""
    exif = image.getexif()
    found: dict[str, str] = {}
    comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT) or exif.get(_USER_COMMENT)
    if isinstance(comment, (bytes, str)) and comment:
        found["UserComment"] = _decode_user_comment(comment)
    for tag in (_EXIF_MAKE, _EXIF_MODEL):
        value = exif.get(tag)
        if isinstance(value, str) and ":" in value:
            key, _, text = value.partition(":")
            if key in ("prompt", "workflow"):
                found[key] = text
    return found


_STEALTH_SIGNATURES = {
    "A": {"stealth_pnginfo": False, "stealth_pngcomp": True},
    "RGB": {"stealth_rgbinfo": False, "stealth_rgbcomp": True},
}
_SIGNATURE_BITS = len("stealth_pnginfo") * 8
_LENGTH_BITS = 32
_MAX_STEALTH_TEXT = 4 * 1024 * 1024
# bytes.translate table: each pixel byte -> ASCII "0" or "1" of its lowest bit.
_LSB_DIGITS = bytes(48 + (value & 1) for value in range(256))


def _stealth_bits(image: Image.Image, bands: str, count: int) -> bytes:
    """The first ``count`` hidden bits, as bytes (``count`` is a multiple of 8).

    The writer walks pixels column by column; transposing a crop of just the columns
    needed turns that into Pillow's row order, so big images stay cheap.
    """
    per_pixel = len(bands)
    pixels = -(-count // per_pixel)
    columns = min(image.width, -(-pixels // image.height))
    crop = image.crop((0, 0, columns, image.height))
    crop = crop.getchannel("A") if bands == "A" else crop.convert("RGB")
    data = crop.transpose(Image.Transpose.TRANSPOSE).tobytes()
    digits = data[: pixels * per_pixel].translate(_LSB_DIGITS)[:count]
    return int(digits, 2).to_bytes(count // 8, "big") if digits else b""


def stealth_text(image: Image.Image, bands: str) -> str | None:
    capacity = image.width * image.height * len(bands)
    if capacity < _SIGNATURE_BITS + _LENGTH_BITS:
        return None
    header = _stealth_bits(image, bands, _SIGNATURE_BITS + _LENGTH_BITS)
    signature = header[: _SIGNATURE_BITS // 8].decode("latin-1")
    compressed = _STEALTH_SIGNATURES[bands].get(signature)
    if compressed is None:
        return None
    length = int.from_bytes(header[_SIGNATURE_BITS // 8 :], "big")
    total = _SIGNATURE_BITS + _LENGTH_BITS + length
    if length == 0 or length % 8 or total > capacity:
        return None
    payload = _stealth_bits(image, bands, total)[len(header) :]
    if compressed:
        inflater = zlib.decompressobj(wbits=31)  # gzip framing
        payload = inflater.decompress(payload, _MAX_STEALTH_TEXT)
    return payload.decode("utf-8", errors="replace")
