"""Qwen2.5-VL's processor for Qwen-Image-Edit: the tokenizer and the image processor that
put the input image, with the instruction, through the text encoder's vision tower.

transformers' Qwen2VLProcessor also holds a video processor, which needs torchvision (no
dependency of the studio); without torchvision the processor cannot be built at all (its
class check of the missing video processor fails), from a Qwen-Image-Edit folder or from
parts. The edit pipelines never pass a video, so the studio builds it without one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from studio.core.files import read_json_object

# What a diffusers folder's model_index.json says for the processor of Qwen-Image-Edit
PROCESSOR_ENTRY = ["transformers", "Qwen2VLProcessor"]


def processor(config_folder: Path, tokenizer: Any) -> Any:
    """A Qwen2VLProcessor (for images) from a folder's preprocessor_config.json and a
    Qwen tokenizer."""
    from transformers import Qwen2VLImageProcessor

    images = Qwen2VLImageProcessor.from_pretrained(config_folder, local_files_only=True)
    return _image_processor_class()(image_processor=images, tokenizer=tokenizer)


def folder_components(folder: Path) -> dict[str, Any]:
    """The processor of a diffusers folder that lists Qwen2VLProcessor (Qwen-Image-Edit's),
    built from its processor folder; {} for any other folder."""
    try:
        index = read_json_object(folder / "model_index.json", 1024 * 1024)
    except (OSError, ValueError):
        return {}
    if index.get("processor") != PROCESSOR_ENTRY:
        return {}
    from transformers import Qwen2Tokenizer

    configs = folder / "processor"
    tokenizer = Qwen2Tokenizer.from_pretrained(configs, local_files_only=True)
    return {"processor": processor(configs, tokenizer)}


@cache
def _image_processor_class() -> type:
    from transformers import Qwen2VLProcessor

    class ImageQwen2VLProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor with no video processor (see the module's note)."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None  # no video is ever passed
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImageQwen2VLProcessor
