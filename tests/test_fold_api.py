"""PixelFold / PixelUnfold as layers: errors, channel orders, serialization, compile, ONNX."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
import torch.nn.functional as F

from pixelfold.layers import (
    PixelFold,
    PixelUnfold,
    fold_pattern,
    pixel_fold,
    pixel_unfold,
    unfold_pattern,
)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_pixel_shuffle_order_matches_torch(factor):
    x = torch.randn(2, 3, 4 * factor, 2 * factor)
    assert torch.equal(pixel_fold(x, factor, "pixel_shuffle"), F.pixel_unshuffle(x, factor))
    y = torch.randn(2, 3 * factor * factor, 2, 5)
    assert torch.equal(pixel_unfold(y, factor, "pixel_shuffle"), F.pixel_shuffle(y, factor))


def test_pixelfolder_order_is_patch_major():
    # one 2x2 patch of a 2-channel image: channel c, offset (p1, p2) -> folded index p1*4+p2*2+c
    x = torch.arange(8.0).reshape(1, 2, 2, 2)  # x[0, c, p1, p2] = 4c + 2p1 + p2
    y = pixel_fold(x, 2)
    assert y.flatten().tolist() == [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]
    assert not torch.equal(y, F.pixel_unshuffle(x, 2))


def test_patterns_are_the_documented_einops_recipes():
    assert fold_pattern() == "b c (h p1) (w p2) -> b (p1 p2 c) h w"
    assert unfold_pattern() == "b (p1 p2 c) h w -> b c (h p1) (w p2)"
    assert fold_pattern("pixel_shuffle") == "b c (h p1) (w p2) -> b (c p1 p2) h w"
    assert PixelFold(2).pattern == fold_pattern()
    assert "factor=2" in repr(PixelFold(2)) and "pixelfolder" in repr(PixelFold(2))


def test_inverse_pairs():
    fold = PixelFold(3, channel_order="pixel_shuffle")
    unfold = fold.inverse()
    assert isinstance(unfold, PixelUnfold)
    assert (unfold.factor, unfold.channel_order) == (3, "pixel_shuffle")
    back = unfold.inverse()
    assert isinstance(back, PixelFold) and back.factor == 3


def test_parameter_free():
    assert list(PixelFold(2).parameters()) == [] and PixelFold(2).state_dict() == {}
    assert list(PixelUnfold(2).buffers()) == []


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (PixelFold(2), (1, 3, 5, 4), r"PixelFold\(2\) needs H and W divisible by 2, got 5x4"),
        (PixelFold(3), (1, 3, 6, 8), r"PixelFold\(3\) needs H and W divisible by 3, got 6x8"),
        (PixelFold(2), (3, 4, 4), r"PixelFold\(2\) expects a 4-D .* got shape \[3, 4, 4\]"),
        (PixelUnfold(2), (1, 6, 4, 4), r"PixelUnfold\(2\) needs channels divisible by 4, got 6"),
        (PixelUnfold(2), (1, 8, 4, 4, 1), r"PixelUnfold\(2\) expects a 4-D"),
    ],
)
def test_bad_shapes_raise_value_error_naming_shape_and_factor(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(torch.zeros(shape))


def test_functional_errors():
    with pytest.raises(ValueError, match=r"got 7x8"):
        pixel_fold(torch.zeros(1, 1, 7, 8))
    with pytest.raises(ValueError, match=r"channels divisible by 9, got 4"):
        pixel_unfold(torch.zeros(1, 4, 2, 2), 3)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_factor(bad):
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        PixelFold(bad)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        pixel_unfold(torch.zeros(1, 4, 2, 2), bad)


def test_bad_channel_order():
    with pytest.raises(ValueError, match=r"channel_order must be one of .* got 'nchw'"):
        PixelUnfold(2, channel_order="nchw")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    x = torch.randn(2, 3, 8, 8).to(dtype)
    y = PixelFold(2)(x)
    assert y.dtype == dtype and torch.equal(PixelUnfold(2)(y), x)


def test_channels_last_input():
    x = torch.randn(2, 3, 8, 6)
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(PixelFold(2)(xl), PixelFold(2)(x))
    assert torch.equal(PixelUnfold(2)(PixelFold(2)(xl)), x)


def test_gradients_flow_through_fold():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    PixelUnfold(2)(PixelFold(2)(x)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_pickle_and_state_dict_round_trip():
    layer = PixelFold(4, channel_order="pixel_shuffle")
    clone = pickle.loads(pickle.dumps(layer))
    x = torch.randn(1, 2, 8, 8)
    assert torch.equal(clone(x), layer(x))
    assert clone.channel_order == "pixel_shuffle" and clone.factor == 4
    buf = io.BytesIO()
    torch.save(torch.nn.Sequential(PixelFold(2), PixelUnfold(2)), buf)
    buf.seek(0)
    model = torch.load(buf, weights_only=False)
    assert torch.equal(model(x), x)


def test_torchscript():
    model = torch.nn.Sequential(PixelFold(2), torch.nn.Conv2d(12, 12, 1), PixelUnfold(2))
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(scripted(x), model(x))
    with pytest.raises(Exception, match="needs H and W divisible by 2"):
        scripted(torch.randn(1, 3, 7, 8))


def test_torch_compile_fullgraph_eager_backend():
    """No graph breaks (fullgraph=True) through fold, conv and unfold."""
    model = torch.nn.Sequential(PixelFold(2), torch.nn.Conv2d(12, 12, 3, padding=1),
                                PixelUnfold(2))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(compiled(x), model(x))


def test_torch_compile_inductor_functional():
    fn = torch.compile(lambda t: pixel_unfold(pixel_fold(t) * 2.0), fullgraph=True)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fn(x), x * 2.0)


def test_onnx_export_and_run(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = torch.nn.Sequential(PixelFold(2), PixelUnfold(2, channel_order="pixel_shuffle"),
                                PixelFold(2, channel_order="pixel_shuffle"), PixelUnfold(2))
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "fold.onnx"
    torch.onnx.export(model.eval(), (x,), str(path), dynamo=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert torch.equal(torch.from_numpy(out), model(x))
