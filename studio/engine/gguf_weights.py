"""Quantised GGUF weights kept quantised in memory (GGUF text encoders): a linear layer's weight
stays the file's quantised bytes (diffusers' GGUFParameter) and is dequantised in each forward
(diffusers' GGUFLinear), as diffusers does for GGUF transformers, so a Q4 text encoder costs
about a third of its 16-bit size (its embedding and norms are held at full precision), not
all of it. Imported only once the gguf package is known to be installed
(single_file.gguf_module)."""

from __future__ import annotations

from typing import Any

import gguf
import numpy as np
import torch
from diffusers.quantizers.gguf.utils import (
    SUPPORTED_GGUF_QUANT_TYPES,
    GGUFLinear,
    GGUFParameter,
    dequantize_gguf_tensor,
)

_Q = gguf.GGMLQuantizationType
FULL_PRECISION = frozenset({_Q.F32, _Q.F16, _Q.BF16})
# the quantisations diffusers dequantises on the fly (torch ports of llama.cpp's); others
# (Q8_1, most IQ types, TQ, MXFP4) are dequantised when read, by the gguf package
ON_THE_FLY = frozenset(SUPPORTED_GGUF_QUANT_TYPES) - FULL_PRECISION


def stays_quantised(tensor: Any) -> bool:
    """Whether a GGUFReader tensor is kept as its quantised bytes."""
    return tensor.tensor_type in ON_THE_FLY


def dequantised_when_read(tensor: Any) -> bool:
    """Whether a GGUFReader tensor is quantised in a way diffusers cannot dequantise on the fly."""
    return tensor.tensor_type not in ON_THE_FLY | FULL_PRECISION


def read_tensor(tensor: Any, dtype: Any = None) -> torch.Tensor:
    """A GGUFReader tensor in torch: a quantisation diffusers dequantises on the fly as a
    GGUFParameter of its bytes, anything else dequantised (or converted) to `dtype`."""
    if stays_quantised(tensor):
        return quantised_parameter(tensor)
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(d) for d in reversed(list(tensor.shape)))  # GGUF lists dims innermost first
    # a copy: F32's data is a view of the file's read-only memory map, which it would hold
    weight = torch.from_numpy(np.array(data, np.float32)).reshape(shape)
    return weight if dtype is None else weight.to(dtype)


def quantised_parameter(tensor: Any) -> GGUFParameter:
    """A quantised tensor's bytes (rows × bytes a row), copied out of the file's memory map so
    that the file is not held. Viewed as int8, not diffusers' uint8: T5 casts its activations
    to its `wo` layer's weight dtype unless that is int8 (bitsandbytes' weights), and uint8
    activations would be garbage; diffusers' dequantiser reads the bytes as uint8 either way."""
    data = torch.from_numpy(np.array(tensor.data, dtype=np.uint8)).view(torch.int8)
    return GGUFParameter(data, quant_type=tensor.tensor_type)


class QuantisedLinear(GGUFLinear):
    """diffusers' GGUFLinear (its weight dequantised in each forward), computing in its input's
    dtype rather than one fixed at load: the studio casts a loaded pipeline from float16 to
    bfloat16 for the families that need it (models._placement), which moves the embeddings
    and norms, and so the activations, but not a fixed compute dtype. A layer the model keeps
    in float32 under float16 (T5's `wo`, whose activations overflow float16) computes float16
    inputs in float32, as transformers would keep its weight."""

    keeps_fp32 = False

    @property
    def device(self) -> torch.device:
        """Where the layer's weight is. GGUFLinear records the device it was built on as an
        attribute ("meta" here, where it is built before its weight is set), stale from the
        start and after every move."""
        return self.weight.device

    @device.setter
    def device(self, value: Any) -> None:
        """GGUFLinear's __init__ records its device: the weight's is the one that holds."""

    @classmethod
    def replacing(
        cls, linear: torch.nn.Linear, weight: GGUFParameter, fp32: bool
    ) -> QuantisedLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        layer.weight = weight
        layer.bias = linear.bias
        layer.keeps_fp32 = fp32
        return layer.requires_grad_(False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        fp32 = self.keeps_fp32 and inputs.dtype == torch.float16
        # GGUFLinear reads its compute dtype from the layer, in both its CPU and CUDA paths
        self.compute_dtype = torch.float32 if fp32 else inputs.dtype
        return super().forward(inputs.to(self.compute_dtype))


def place(model: torch.nn.Module, weights: dict[str, GGUFParameter], dtype: Any) -> None:
    """Quantised weights (named as `model`'s state dict names them) set into `model`: a linear
    layer's stays quantised (its layer becomes a QuantisedLinear); any other's (an embedding's:
    only linear layers dequantise in forward) is dequantised to `dtype` now."""
    fp32_modules = getattr(model, "_keep_in_fp32_modules", None) or ()
    for name, weight in weights.items():
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        if isinstance(module, torch.nn.Linear) and attribute == "weight":
            fp32 = any(kept in module_name.split(".") for kept in fp32_modules)
            parent, _, child = module_name.rpartition(".")
            setattr(
                model.get_submodule(parent), child, QuantisedLinear.replacing(module, weight, fp32)
            )
        else:
            value = dequantize_gguf_tensor(weight).to(dtype)
            setattr(module, attribute, torch.nn.Parameter(value, requires_grad=False))
