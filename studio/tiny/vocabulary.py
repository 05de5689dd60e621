"""What studio-tiny understands: the words of its captions, as data.

The renderer draws from these lists, the captions use exactly these words, and the
studio shows `describe()` to the artist where the embedded model is selected.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")

# Palette in sRGB; renders jitter each channel a little so the model sees a range.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (40, 170, 60),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 40),
    "purple": (135, 55, 180),
    "orange": (245, 135, 25),
    "white": (242, 242, 242),
    "black": (22, 22, 22),
}

# Object side as a fraction of the image side (min, max).
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.22, 0.27),
    "large": (0.38, 0.44),
}

# Position name -> centre of the object as a fraction of (width, height).
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.2, 0.2),
    "top": (0.5, 0.2),
    "top right": (0.8, 0.2),
    "left": (0.2, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.8, 0.5),
    "bottom left": (0.2, 0.8),
    "bottom": (0.5, 0.8),
    "bottom right": (0.8, 0.8),
}

# How a position is said in a sentence ("a red circle at the top left").
POSITION_PHRASES: dict[str, str] = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}

# Background kinds: a plain colour, or a colour with a texture word before "background".
TEXTURES: tuple[str, ...] = ("plain", "striped", "gradient")

SYNONYMS: dict[str, str] = {"center": "centre"}

EXAMPLE_PROMPTS: tuple[str, ...] = (
    "a small red circle at the top left on a blue background",
    "a large yellow star in the centre on a black background",
    "blue background, red circle, top left",
    "a red circle and a green square",
    "a white ring on the left and an orange triangle on the right on a purple striped background",
    "green gradient background, large black square, bottom right",
)


def as_dict() -> dict[str, object]:
    """The vocabulary as plain JSON-able data (stored in studio.json for the engine)."""
    return {
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "positions": list(POSITIONS),
        "backgrounds": [f"{c} background" for c in COLOURS]
        + [f"{c} {t} background" for t in TEXTURES[1:] for c in ("<colour>",)],
        "synonyms": dict(SYNONYMS),
        "examples": list(EXAMPLE_PROMPTS),
    }


def describe() -> str:
    """A short text for the UI: what an artist can ask studio-tiny for."""
    return (
        "studio-tiny understands: "
        f"shapes: {', '.join(SHAPES)}; "
        f"colours: {', '.join(COLOURS)}; "
        f"sizes: {', '.join(SIZES)}; "
        f"positions: {', '.join(POSITIONS)}; "
        "backgrounds: any colour, plain, striped or gradient; "
        "one or two objects. "
        f"Example: '{EXAMPLE_PROMPTS[0]}'."
    )
