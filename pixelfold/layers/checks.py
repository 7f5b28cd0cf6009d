"""Checks of the tensors handed to layers and models, with messages that say what to do.

PyTorch reports a half-precision latent fed to a float32 model as ``expected m1 and m2 to have
the same dtype, but got: c10::Half != float``, from deep inside a matrix product. The layers
and models of pixelfold check their inputs against their own weights first and raise an
[`InputError`][pixelfold.layers.checks.InputError] naming the input, what it is, what was
expected and the fix:

    z is torch.float16 but the generator's weights are torch.float32: convert the model
    (G.half()) or the input (z.float()), or run under torch.autocast

The check is two comparisons (dtype identity, device equality), about 0.3 microseconds; only a
mismatch goes further. Under ``torch.autocast`` any floating-point input is accepted (autocast
casts it for the convolutions and matrix products); under ``torch.compile`` and
``torch.export`` a mismatch is left to PyTorch (the guards of the compiled graph cover dtypes
and devices).
"""

from __future__ import annotations

import torch

from ..utils.errors import PixelfoldError

__all__ = ["InputError", "check_input", "check_tensor"]

_METHODS = {torch.float16: "half", torch.bfloat16: "bfloat16", torch.float32: "float",
            torch.float64: "double"}


class InputError(PixelfoldError, TypeError):
    """A layer or model got an input of the wrong type, dtype or device (a ``TypeError``)."""


def _convert(var: str, dtype: torch.dtype) -> str:
    method = _METHODS.get(dtype)
    return f"{var}.{method}()" if method else f"{var}.to({dtype})"


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):  # a device type without autocast (meta, ...)
        return False


def check_tensor(x: object, name: str, owner: str) -> None:
    """Raise a ``TypeError`` naming ``owner``, ``name`` and the type when ``x`` is not a
    ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{owner} expects {name} as a torch.Tensor, got a "
                         f"{type(x).__name__}")


def check_input(x: torch.Tensor, like: torch.Tensor, name: str, owner: str, *,
                var: str = "model", float_hint: str = "") -> None:
    """Check that the input ``x`` of ``owner`` suits the weight ``like``.

    Args:
        x: the input.
        like: a weight of the layer or model (its dtype and device are what ``x`` needs).
        name: how the input is called in the message (``"z"``, ``"images"``, ``"x"``).
        owner: who takes it, in the message (``"the generator"``, ``"ModulatedConv2d"``;
            "OWNER's weights" must read well).
        var: how the model is called in the suggested fix (``"G"`` gives ``G.half()``).
        float_hint: what to say after "must be a floating-point tensor" when ``x`` holds
            integers (e.g. ``" (torch.randn(B, z_dim))"``).

    Raises:
        InputError: ``x`` is not a tensor, holds integers or booleans, lies on another device
            than ``like``, or has another floating-point dtype outside ``torch.autocast``.
    """
    try:
        if x.dtype is like.dtype and x.device == like.device:
            return
    except AttributeError:
        check_tensor(x, name, owner)
        raise
    if torch.compiler.is_compiling():
        return
    check_tensor(x, name, owner)
    if not x.is_floating_point():
        raise InputError(f"{owner} expects {name} as a floating-point tensor{float_hint}, got "
                         f"{x.dtype}")
    if x.device != like.device:
        raise InputError(f"{name} is on {x.device} but {owner}'s weights are on "
                         f"{like.device}: move the input ({name}.to({str(like.device)!r})) or "
                         f"the model ({var}.to({str(x.device)!r}))")
    if _autocast_enabled(x.device.type):
        return
    raise InputError(f"{name} is {x.dtype} but {owner}'s weights are {like.dtype}: convert "
                     f"the model ({_convert(var, x.dtype)}) or the input "
                     f"({_convert(name, like.dtype)}), or run under torch.autocast")
