"""Every public layer of ``pixelfold.layers`` through one matrix of checks (as timm tests its
registry): forward, backward, state-dict round trip, ``torch.compile``, ``torch.jit.script``,
float64 / bfloat16, ``device=`` / ``dtype=``, the reference implementation, CUDA.

``LAYERS`` says how to build each layer with tiny arguments and what it takes; ``FUNCTIONS``
does the same for the public tensor ops; ``NOT_TENSOR_OPS`` lists the other names of
``__all__`` (helpers, types, constants) with where they are tested. A name added to
``pixelfold.layers.__all__`` without an entry in one of them fails
``test_every_public_name_has_an_entry``, naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import pixelfold.layers as L
from pixelfold.layers import use_impl
from pixelfold.layers.testing import trained_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")


Inputs = Callable[[torch.Generator], tuple[Any, ...]]


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen)


@dataclass(frozen=True)
class LayerCase:
    """How to build one layer with tiny arguments, and what to call it with.

    ``build(**factory)`` builds it (``factory`` is ``device=`` / ``dtype=`` where its
    constructor takes them); ``inputs(gen)`` gives the positional arguments in float32 on the
    CPU (floating tensors follow the dtype and device under test, other values pass through);
    ``kwargs`` are the keyword arguments of every call; ``shape`` the output shape.
    ``script`` is ``None`` for a layer that ``torch.jit.script`` compiles, else why it cannot.
    """

    build: Callable[..., nn.Module]
    inputs: Inputs
    shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    script: str | None = None


_MODCONV_SCRIPT = ("forward takes keyword-only arguments and catches (RuntimeError, TypeError, "
                   "AttributeError) to name a bad style tensor; the fast paths branch on "
                   "torch.compiler.is_compiling() and run autograd.Functions")
_STYLED_SCRIPT = "holds a ModulatedConv2d (see there); the noise is Optional[NoiseInjection]"
_EQUAL_CONV_SCRIPT = ("forward takes *more parts and optional BiasLeakyReLU / Blur modules as "
                      "arguments (the fused path); the stride-1 conv is an autograd.Function")
_FIR_SCRIPT = ("upfirdn2d / filter2d / upsample2d take int-or-sequence arguments and "
               "Sequence[float] taps, and their fast paths run autograd.Functions")

_SHAPE_MESSAGE = ("its error message formats the input shape with tuple(x.shape), which "
                  "TorchScript cannot size")

LAYERS: dict[str, LayerCase] = {
    "BiasLeakyReLU": LayerCase(
        lambda **f: L.BiasLeakyReLU(4, **f), lambda g: (_randn(g, 2, 4, 3, 3),), (2, 4, 3, 3),
        script="forward dispatches on impl to an in-place fast path (bias_act_fast)"),
    "BiasLeakyReLU/2d": LayerCase(
        lambda **f: L.BiasLeakyReLU(4, negative_slope=0.1, scale=1.0, **f),
        lambda g: (_randn(g, 3, 4),), (3, 4),
        script="as BiasLeakyReLU"),
    "Blur": LayerCase(
        lambda **f: L.Blur((1, 3, 3, 1), padding=(2, 1), **f), lambda g: (_randn(g, 2, 3, 6, 6),),
        (2, 3, 6, 6), script=_FIR_SCRIPT),
    "CoordinateEmbedding": LayerCase(
        lambda **f: L.CoordinateEmbedding(4, 5, 6, **f), lambda g: (2,), (2, 4, 5, 6),
        script="forward takes an optional CoordinateWindow, a dataclass TorchScript cannot "
               "type"),
    "Downsample": LayerCase(
        lambda **f: L.Downsample((1, 3, 3, 1), 2, **f), lambda g: (_randn(g, 2, 3, 8, 6),),
        (2, 3, 4, 3),
        script=_FIR_SCRIPT),
    "EqualConv2d": LayerCase(
        lambda **f: L.EqualConv2d(3, 4, 3, padding=1, **f), lambda g: (_randn(g, 2, 3, 5, 5),),
        (2, 4, 5, 5), script=_EQUAL_CONV_SCRIPT),
    "EqualConv2d/stride2-nobias-lrmul": LayerCase(
        lambda **f: L.EqualConv2d(3, 4, 1, stride=2, bias=False, lr_mul=0.5, **f),
        lambda g: (_randn(g, 2, 3, 6, 6),), (2, 4, 3, 3), script=_EQUAL_CONV_SCRIPT),
    "EqualLinear": LayerCase(
        lambda **f: L.EqualLinear(5, 4, lr_mul=0.1, bias_init=0.5, **f),
        lambda g: (_randn(g, 3, 5),), (3, 4),
        script="the activation is a string-selected fused bias_leaky_relu with an impl "
               "switch"),
    "EqualLinear/lrelu": LayerCase(
        lambda **f: L.EqualLinear(5, 4, activation="lrelu", **f), lambda g: (_randn(g, 3, 5),),
        (3, 4), script="as EqualLinear"),
    "FourierFeatures": LayerCase(
        lambda **f: L.FourierFeatures(8, **f),
        lambda g: (L.coordinate_grid(4, 5, batch_size=2),), (2, 8, 4, 5),
        script=_SHAPE_MESSAGE),
    "FourierFeatures/fixed": LayerCase(
        lambda **f: L.FourierFeatures(8, learned=False, **f),
        lambda g: (L.coordinate_grid(4, 5, batch_size=2),), (2, 8, 4, 5),
        script=_SHAPE_MESSAGE),
    "MappingNetwork": LayerCase(
        lambda **f: L.MappingNetwork(8, 6, 2, num_ws=3, **f), lambda g: (_randn(g, 2, 8),),
        (2, 3, 6), kwargs={"truncation_psi": 0.7, "truncation_cutoff": 2},
        script="forward is keyword-only and checks its input with check_input (isinstance "
               "on torch types, torch.is_autocast_enabled)"),
    "MappingNetwork/conditional": LayerCase(
        lambda **f: L.MappingNetwork(8, 6, 2, num_ws=3, c_dim=4, **f),
        lambda g: (_randn(g, 2, 8), torch.softmax(_randn(g, 2, 4), dim=1)), (2, 3, 6),
        script="forward is keyword-only and checks its input with check_input (isinstance "
               "on torch types, torch.is_autocast_enabled)"),
    "MappingNetwork/labels-only": LayerCase(  # a conditional discriminator's label mapping
        lambda **f: L.MappingNetwork(0, 6, 2, c_dim=4, track_w_avg=False, **f),
        lambda g: (None, torch.softmax(_randn(g, 2, 4), dim=1)), (2, 6),
        script="forward is keyword-only and checks its input with check_input (isinstance "
               "on torch types, torch.is_autocast_enabled)"),
    "MinibatchStdDev": LayerCase(
        lambda: L.MinibatchStdDev(2, 2), lambda g: (_randn(g, 4, 4, 3, 3),), (4, 6, 3, 3)),
    "ModulatedConv2d": LayerCase(
        lambda **f: L.ModulatedConv2d(3, 4, 3, 6, **f),
        lambda g: (_randn(g, 2, 3, 5, 5), _randn(g, 2, 6)), (2, 4, 5, 5),
        script=_MODCONV_SCRIPT),
    "ModulatedConv2d/grouped-nodemod": LayerCase(
        lambda **f: L.ModulatedConv2d(3, 4, 1, 6, demodulate=False, path="grouped", **f),
        lambda g: (_randn(g, 2, 3, 5, 5), _randn(g, 2, 6)), (2, 4, 5, 5),
        script=_MODCONV_SCRIPT),
    "ModulatedConv2d/up2": LayerCase(
        lambda **f: L.ModulatedConv2d(3, 4, 3, 6, up=2, **f),
        lambda g: (_randn(g, 2, 3, 4, 5), _randn(g, 2, 6)), (2, 4, 8, 10),
        script=_MODCONV_SCRIPT),
    "NoiseInjection": LayerCase(
        lambda **f: L.NoiseInjection((5, 5), **f), lambda g: (_randn(g, 2, 3, 5, 5),),
        (2, 3, 5, 5), kwargs={"noise_mode": "const"},
        script="noise_const is an Optional buffer and the skip test calls "
               "torch.compiler.is_compiling()"),
    "PixelFold": LayerCase(
        lambda: L.PixelFold(2), lambda g: (_randn(g, 2, 3, 4, 6),), (2, 12, 2, 3)),
    "PixelFold/pixel_shuffle": LayerCase(
        lambda: L.PixelFold(2, channel_order="pixel_shuffle"),
        lambda g: (_randn(g, 2, 3, 4, 6),), (2, 12, 2, 3)),
    "PixelNorm": LayerCase(
        lambda: L.PixelNorm(), lambda g: (_randn(g, 3, 5),), (3, 5)),
    "PixelUnfold": LayerCase(
        lambda: L.PixelUnfold(2), lambda g: (_randn(g, 2, 8, 3, 2),), (2, 2, 6, 4)),
    "StyledConv2d": LayerCase(
        lambda **f: L.StyledConv2d(3, 4, 3, 6, resolution=(5, 5), **f),
        lambda g: (_randn(g, 2, 3, 5, 5), _randn(g, 2, 6)), (2, 4, 5, 5),
        kwargs={"noise_mode": "const"}, script=_STYLED_SCRIPT),
    "StyledConv2d/up2-nonoise": LayerCase(
        lambda **f: L.StyledConv2d(3, 4, 3, 6, noise=False, up=2, **f),
        lambda g: (_randn(g, 2, 3, 4, 4), _randn(g, 2, 6)), (2, 4, 8, 8),
        script=_STYLED_SCRIPT),
    "ToRGB": LayerCase(
        lambda **f: L.ToRGB(4, 6, **f),
        lambda g: (_randn(g, 2, 4, 6, 6), _randn(g, 2, 6), _randn(g, 2, 3, 3, 3)),
        (2, 3, 6, 6), script="holds a ModulatedConv2d (see there) and an Optional Upsample"),
    "ToRGB/same-resolution": LayerCase(
        lambda **f: L.ToRGB(4, 6, out_channels=1, upsample=False, **f),
        lambda g: (_randn(g, 2, 4, 3, 3), _randn(g, 2, 6), _randn(g, 2, 1, 3, 3)),
        (2, 1, 3, 3), script="as ToRGB"),
    "Upsample": LayerCase(
        lambda **f: L.Upsample((1, 3, 3, 1), 2, **f), lambda g: (_randn(g, 2, 3, 4, 5),),
        (2, 3, 8, 10),
        script=_FIR_SCRIPT),
    "Upsample/2d-kernel-factor3": LayerCase(
        lambda **f: L.Upsample(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]),
                               3, **f),
        lambda g: (_randn(g, 2, 3, 3, 4),), (2, 3, 9, 12), script=_FIR_SCRIPT),
}


@dataclass(frozen=True)
class FunctionCase:
    """A public tensor op: ``fn(*inputs(gen), **kwargs)`` gives ``shape``; ``constants`` are
    the positions of tensor inputs that are constants of the op (FIR kernels: no gradient
    flows into them); ``impl`` says whether it takes ``impl=`` (then the reference and the
    fast implementation are compared)."""

    fn: Callable[..., torch.Tensor]
    inputs: Inputs
    shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    constants: tuple[int, ...] = ()
    impl: bool = False


FUNCTIONS: dict[str, FunctionCase] = {
    "bias_leaky_relu": FunctionCase(
        L.bias_leaky_relu, lambda g: (_randn(g, 2, 4, 3, 3), _randn(g, 4)), (2, 4, 3, 3),
        impl=True),
    "conv2d": FunctionCase(
        L.conv2d, lambda g: (_randn(g, 2, 3, 6, 6), _randn(g, 4, 3, 3, 3), _randn(g, 4)),
        (2, 4, 6, 6), kwargs={"padding": 1}, impl=True),
    "conv2d/stride2": FunctionCase(
        L.conv2d, lambda g: (_randn(g, 2, 3, 6, 6), _randn(g, 4, 3, 3, 3)),
        (2, 4, 2, 2), kwargs={"stride": 2}, impl=True),
    "filter2d": FunctionCase(
        L.filter2d, lambda g: (_randn(g, 2, 3, 6, 6), L.make_kernel((1, 3, 3, 1))),
        (2, 3, 3, 3), kwargs={"padding": (1, 1, 1, 1), "down": 2}, constants=(1,), impl=True),
    "modulated_conv2d": FunctionCase(
        L.modulated_conv2d,
        lambda g: (_randn(g, 2, 3, 5, 5), _randn(g, 4, 3, 3, 3), _randn(g, 2, 3)),
        (2, 4, 5, 5), kwargs={"padding": 1}, impl=True),
    "pixel_fold": FunctionCase(L.pixel_fold, lambda g: (_randn(g, 2, 3, 4, 6),), (2, 12, 2, 3)),
    "pixel_norm": FunctionCase(L.pixel_norm, lambda g: (_randn(g, 3, 5),), (3, 5)),
    "pixel_unfold": FunctionCase(L.pixel_unfold, lambda g: (_randn(g, 2, 8, 3, 2),),
                                 (2, 2, 6, 4)),
    "upfirdn2d": FunctionCase(
        L.upfirdn2d, lambda g: (_randn(g, 2, 3, 5, 4), _randn(g, 4, 3)), (2, 3, 10, 7),
        kwargs={"up": 2, "padding": (1, 0, 2, 1)}, constants=(1,), impl=True),
    "upsample2d": FunctionCase(
        L.upsample2d, lambda g: (_randn(g, 2, 3, 4, 5), (0.5, 1.5, 1.5, 0.5)), (2, 3, 8, 10),
        kwargs={"factor": 2}, impl=True),
}

NOT_TENSOR_OPS: dict[str, str] = {
    "EMBEDDING_PADDINGS": "a choice list (test_choice_lists_are_their_literal_types)",
    "NOISE_MODES": "a choice list (test_choice_lists_are_their_literal_types)",
    "ChannelOrder": "a Literal type (test_choice_lists_are_their_literal_types)",
    "CoordinateWindow": "a dataclass of coordinates (test_coordinates.py)",
    "Impl": "a Literal type (test_choice_lists_are_their_literal_types)",
    "InputError": "an exception (test_input_checks.py)",
    "LabelError": "an exception (test_conditional.py)",
    "label_vectors": "checks and converts class labels (test_conditional.py, and every "
                     "conditional MappingNetwork case here)",
    "ModConvPath": "a Literal type (test_choice_lists_are_their_literal_types)",
    "NoiseMode": "a Literal type (test_choice_lists_are_their_literal_types)",
    "check_input": "an input check (test_input_checks.py)",
    "check_noise_mode": "an argument check (test_choice_lists_are_their_literal_types)",
    "coordinate_grid": "a constant grid without tensor inputs (test_coordinate_grid_dtypes)",
    "fold_pattern": "an einops pattern string (test_fold_api.py)",
    "unfold_pattern": "an einops pattern string (test_fold_api.py)",
    "get_impl": "reads the impl switch (test_ops.py)",
    "use_impl": "sets the impl switch (test_fast_paths.py, and the matrix here)",
    "make_kernel": "builds a FIR kernel from taps (test_layers.py)",
    "separable_taps": "normalizes FIR taps (test_ops.py)",
    "set_noise_skipping": "a switch over a model's noise layers (test_fast_paths.py)",
}


# ---------------------------------------------------------------- helpers


def _cast(value: Any, dtype: torch.dtype, device: torch.device | str = "cpu") -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(device=device, dtype=dtype)
    return value


def _inputs(case: LayerCase | FunctionCase, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu", seed: int = 0) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(_cast(v, dtype, device) for v in case.inputs(gen))


def _factory_args(build: Callable[..., nn.Module]) -> bool:
    """Whether ``build`` passes ``device=`` / ``dtype=`` on (its lambda takes ``**f``)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(build).parameters.values())


def _layer(case: LayerCase, seed: int = 0) -> nn.Module:
    """The layer built from ``seed``, its zero-initialized parameters given values (so that
    every term of its forward counts), in eval mode."""
    torch.manual_seed(seed)
    return trained_like(case.build(), seed=seed).eval()


def _call(layer: nn.Module, case: LayerCase, args: tuple[Any, ...]) -> torch.Tensor:
    return layer(*args, **case.kwargs)


def _layer_class(name: str) -> type:
    return getattr(L, name.split("/")[0])


def _public(kind: str) -> set[str]:
    out = set()
    for name in L.__all__:
        obj = getattr(L, name)
        is_layer = isinstance(obj, type) and issubclass(obj, nn.Module)
        if kind == "layers" and is_layer:
            out.add(name)
        elif kind == "functions" and inspect.isfunction(obj):
            out.add(name)
        elif kind == "other" and not is_layer and not inspect.isfunction(obj):
            out.add(name)
    return out


layer_names = pytest.mark.parametrize("name", sorted(LAYERS))
function_names = pytest.mark.parametrize("name", sorted(FUNCTIONS))


# ---------------------------------------------------------------- the registry is complete


def test_every_public_name_has_an_entry():
    layers = _public("layers")
    covered = {n.split("/")[0] for n in LAYERS}
    missing = sorted(layers - covered)
    assert not missing, f"public layers without a LAYERS entry: {missing}"
    functions = {n.split("/")[0] for n in FUNCTIONS}
    missing = sorted(_public("functions") - functions - set(NOT_TENSOR_OPS))
    assert not missing, f"public functions in neither FUNCTIONS nor NOT_TENSOR_OPS: {missing}"
    missing = sorted(_public("other") - set(NOT_TENSOR_OPS))
    assert not missing, f"public names in neither LAYERS nor NOT_TENSOR_OPS: {missing}"
    stale = sorted((covered | functions | set(NOT_TENSOR_OPS)) - set(L.__all__))
    assert not stale, f"registry entries that are not in pixelfold.layers.__all__: {stale}"
    for name, case in LAYERS.items():
        assert type(case.build()) is _layer_class(name), name


# ---------------------------------------------------------------- layers


@layer_names
def test_forward(name):
    case = LAYERS[name]
    out = _call(_layer(case), case, _inputs(case))
    assert out.shape == case.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@layer_names
def test_backward_reaches_every_parameter_and_input(name):
    case = LAYERS[name]
    layer = _layer(case).train()
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a
                 for a in _inputs(case))
    out = _call(layer, case, args)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            assert a.grad is not None and torch.isfinite(a.grad).all(), f"{name}: input {i}"


@layer_names
def test_state_dict_round_trip_into_a_fresh_layer(name):
    case = LAYERS[name]
    trained, fresh = _layer(case, seed=0), _layer(case, seed=1)
    state = trained.state_dict()
    assert list(state) == list(fresh.state_dict())
    fresh.load_state_dict(state, strict=True)
    args = _inputs(case)
    assert torch.equal(_call(fresh, case, args), _call(trained, case, args))


@layer_names
def test_deepcopy_gives_an_equal_independent_layer(name):
    """``copy.deepcopy`` (what an EMA copy of a model does) keeps the outputs and shares no
    tensor."""
    import copy

    case = LAYERS[name]
    layer = _layer(case)
    twin = copy.deepcopy(layer)
    args = _inputs(case)
    assert torch.equal(_call(twin, case, args), _call(layer, case, args))
    mine = {t.data_ptr() for t in (*layer.parameters(), *layer.buffers()) if t.numel()}
    assert not mine & {t.data_ptr() for t in (*twin.parameters(), *twin.buffers()) if t.numel()}


@layer_names
def test_torch_compile_fullgraph(name):
    """Forward and backward of the compiled layer are those of the layer."""
    case = LAYERS[name]
    layer = _layer(case)
    args = _inputs(case)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(*args, **case.kwargs)
    expected = _call(layer, case, args)
    torch.testing.assert_close(out, expected)
    params = [p for p in layer.parameters()]
    if params:
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad((out * weights).sum(), params)
        expected_grads = torch.autograd.grad((expected * weights).sum(), params)
        for (pname, _), g, e in zip(layer.named_parameters(), grads, expected_grads,
                                    strict=True):
            torch.testing.assert_close(g, e, msg=lambda m, n=pname: f"{name}.{n}: {m}")


@layer_names
def test_torch_jit_script(name):
    case = LAYERS[name]
    layer = _layer(case)
    if case.script is not None:
        with pytest.raises(Exception):  # noqa: B017 - any failure to script, as stated
            torch.jit.script(layer)
        return
    scripted = torch.jit.script(layer)
    args = _inputs(case)
    torch.testing.assert_close(scripted(*args, **case.kwargs), _call(layer, case, args))


@layer_names
def test_float64_forward_matches_float32(name):
    case = LAYERS[name]
    layer = _layer(case)
    expected = _call(layer, case, _inputs(case))
    out = _call(layer.to(torch.float64), case, _inputs(case, torch.float64))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected.double(), rtol=1e-4, atol=1e-5)


@layer_names
def test_bfloat16_forward(name):
    case = LAYERS[name]
    layer = _layer(case)
    expected = _call(layer, case, _inputs(case))
    out = _call(layer.to(torch.bfloat16), case, _inputs(case, torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    scale = expected.abs().max().item() + 1e-3
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05 * scale)


@layer_names
def test_device_and_dtype_arguments_are_honoured(name):
    case = LAYERS[name]
    if not _factory_args(case.build):
        assert not {"device", "dtype"} & set(inspect.signature(_layer_class(name)).parameters), \
            f"{name} takes device=/dtype=: pass them in its LAYERS entry"
        return
    layer = case.build(device="meta", dtype=torch.float64)
    tensors = dict(layer.named_parameters()) | dict(layer.named_buffers())
    assert tensors, name
    for tname, t in tensors.items():
        assert t.device.type == "meta", f"{name}.{tname} is on {t.device}, not meta"
        if t.is_floating_point():
            assert t.dtype == torch.float64, f"{name}.{tname} is {t.dtype}, not float64"


@layer_names
def test_reference_implementation_agrees(name):
    case = LAYERS[name]
    layer = _layer(case)
    args = _inputs(case, torch.float64)
    layer = layer.to(torch.float64)
    fast = _call(layer, case, args)
    with use_impl("ref"):
        ref = _call(layer, case, args)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@layer_names
def test_cuda_matches_cpu(name):
    case = LAYERS[name]
    layer = _layer(case).double()
    expected = _call(layer, case, _inputs(case, torch.float64))
    out = _call(layer.cuda(), case, _inputs(case, torch.float64, "cuda"))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- tensor ops


def _apply(case: FunctionCase, args: tuple[Any, ...], **extra: Any) -> torch.Tensor:
    return case.fn(*args, **case.kwargs, **extra)


@function_names
def test_function_forward_backward(name):
    case = FUNCTIONS[name]
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and i not in case.constants
                 else a for i, a in enumerate(_inputs(case)))
    out = _apply(case, args)
    assert out.shape == case.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and i not in case.constants:
            assert a.grad is not None and torch.isfinite(a.grad).all(), f"{name}: input {i}"


@function_names
def test_function_compile_fullgraph(name):
    case = FUNCTIONS[name]
    args = _inputs(case)
    torch._dynamo.reset()  # one lambda for every case: no recompile limit across them
    compiled = torch.compile(lambda *a: _apply(case, a), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), _apply(case, args))


@function_names
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_function_dtypes(name, dtype):
    case = FUNCTIONS[name]
    expected = _apply(case, _inputs(case))
    out = _apply(case, _inputs(case, dtype))
    assert out.dtype == dtype
    if dtype == torch.float64:
        torch.testing.assert_close(out, expected.double(), rtol=1e-4, atol=1e-5)
    else:
        scale = expected.abs().max().item() + 1e-3
        torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05 * scale)


@pytest.mark.parametrize("name", sorted(n for n, c in FUNCTIONS.items() if c.impl))
def test_function_fast_and_reference_agree(name):
    case = FUNCTIONS[name]
    args = _inputs(case, torch.float64)
    torch.testing.assert_close(_apply(case, args, impl="fast"), _apply(case, args, impl="ref"),
                               rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_coordinate_grid_dtypes(dtype):
    grid = L.coordinate_grid(3, 4, batch_size=2, dtype=dtype)
    assert grid.shape == (2, 2, 3, 4) and grid.dtype == dtype
    torch.testing.assert_close(grid.float(), L.coordinate_grid(3, 4, batch_size=2),
                               rtol=0, atol=1e-2)


# ---------------------------------------------------------------- choice lists


def test_choice_lists_are_their_literal_types():
    """Each choice list is its ``Literal`` type's values, and every choice runs where it is
    taken; a value outside it is refused naming it."""
    from typing import get_args

    from pixelfold.layers.ops import IMPLS
    from pixelfold.layers.positional import EmbeddingPadding

    assert get_args(L.NoiseMode) == L.NOISE_MODES
    assert get_args(EmbeddingPadding) == L.EMBEDDING_PADDINGS
    assert get_args(L.Impl) == IMPLS
    x = torch.randn(2, 3, 4, 4)
    noise = L.NoiseInjection(4)
    for mode in L.NOISE_MODES:
        assert L.check_noise_mode(mode) == mode
        assert noise(x, noise_mode=mode).shape == x.shape
    with pytest.raises(ValueError, match="noise_mode must be one of .* got 'fixed'"):
        L.check_noise_mode("fixed")
    embedding = L.CoordinateEmbedding(2, 4)
    for padding in L.EMBEDDING_PADDINGS:
        window = L.CoordinateWindow(shift=(0.3, 0.0), padding=padding)
        assert torch.isfinite(embedding(1, window)).all()
    with pytest.raises(ValueError, match="got 'wrap'"):
        L.CoordinateWindow(padding="wrap")  # type: ignore[arg-type]
    w = torch.randn(2, 6)
    for path in get_args(L.ModConvPath):
        assert L.ModulatedConv2d(3, 4, 3, 6, path=path)(x, w).shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="got 'fast'"):
        L.ModulatedConv2d(3, 4, 3, 6, path="fast")  # type: ignore[arg-type]
    for order in get_args(L.ChannelOrder):
        assert torch.equal(L.pixel_unfold(L.pixel_fold(x, channel_order=order),
                                          channel_order=order), x)
    with pytest.raises(ValueError, match="got 'nchw'"):
        L.pixel_fold(x, channel_order="nchw")  # type: ignore[arg-type]
    for impl in IMPLS:
        with use_impl(impl):  # type: ignore[arg-type]
            assert L.get_impl() == impl
