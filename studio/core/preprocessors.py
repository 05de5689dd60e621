"""Control images from pictures, with no model to download: the preprocessors a ControlNet's
condition is made with, where plain image processing is the real thing.

- "canny": Canny's edges (OpenCV), white on black, as canny ControlNets were trained on;
- "lineart": the lines of a drawing or a picture, white on black as lineart ControlNets
  take them, by a difference of Gaussians: what is darker than its blurred surroundings (a
  pencil or ink line, a thin dark edge) is a line, in proportion to how much darker. This
  is the ControlNet extension's model-free "lineart_standard";
- "none": the image as it is (a scribble or a line map drawn on the control layer).

Preprocessors that need weights of their own (depth, pose, normal maps) are models, loaded
like any other when the user has them; a grey-scale picture is not a depth map, so the
studio offers no such stand-in. Free of torch and Qt.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.core.request import PREPROCESSORS

# The names A1111's ControlNet extension writes as "Module" in the parameters.
MODULE_NAMES = {"none": "none", "canny": "canny", "lineart": "lineart_standard"}
# A union ControlNet's control type as the extension writes it ("Union Control Type", its
# ControlNetUnionControlType, xinsir's groups). A group's first type is the one its name
# reads back as; the other types of a group, and the types it has no name for, are written
# again exactly as "Studio Control Type".
UNION_TYPE_NAMES = {
    "pose": "OpenPose", "depth": "Depth", "softedge": "Soft Edge", "scribble": "Soft Edge",
    "canny": "Hard Edge", "lineart": "Hard Edge", "mlsd": "Hard Edge", "normal": "Normal Map",
    "segment": "Segmentation", "tile": "Tile", "inpaint": "Inpaint",
}  # fmt: skip


def union_types_read(names: dict[str, str]) -> dict[str, str]:
    """Each union type name, lowered as a restore compares it, to the first studio type that
    is written under it: the table `names` read backwards."""
    read: dict[str, str] = {}
    for kind, name in names.items():
        read.setdefault(name.lower(), kind)
    return read


UNION_TYPES_READ = union_types_read(UNION_TYPE_NAMES)
CANNY_LOW = 100  # the extension's default thresholds
CANNY_HIGH = 200


def run(name: str, image: Image.Image, width: int, height: int) -> Image.Image:
    """The control image for a job of this size: `image` brought to it as the input image is
    (stretched, A1111's "just resize"), so the two line up, then through the named
    preprocessor; RGB."""
    from studio.core.imaging import fit

    if name not in PREPROCESSORS:
        known = ", ".join(PREPROCESSORS)
        raise ValueError(f"Unknown preprocessor '{name}': choose one of {known}.")
    fitted = fit(image, width, height).convert("RGB")
    if name == "canny":
        return canny(fitted)
    if name == "lineart":
        return lineart(fitted)
    return fitted


def canny(image: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """Canny's edges of the picture: one-pixel white lines on black."""
    import cv2

    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    edges = cv2.Canny(grey, low, high)
    return Image.fromarray(edges).convert("RGB")


def lineart(image: Image.Image, blur: float = 6.0) -> Image.Image:
    """The dark lines of a drawing or picture, white on black: how much darker each pixel is
    than its blurred surroundings (in its darkest-differing channel), normalised by the
    typical strength of the lines found, so faint pencil and bold ink both come out."""
    import cv2

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    blurred = cv2.GaussianBlur(rgb, (0, 0), blur)
    darker = np.min(blurred - rgb, axis=2).clip(0, 255)
    lines = darker[darker > 8]
    typical = max(16.0, float(np.median(lines))) if lines.size else 16.0
    result = (darker / typical * 127).clip(0, 255).astype(np.uint8)
    return Image.fromarray(result).convert("RGB")
