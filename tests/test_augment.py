"""Tests of pixelfold.training.augment: ADA's pipeline, the adaptive strength controller,
DiffAugment and build_augment."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelfold.training.augment import (
    ADA_PRESETS,
    AdaController,
    AugmentPipe,
    DiffAugment,
    NoAugment,
    build_augment,
)
from pixelfold.utils import CheckpointError, ConfigError, NonFiniteError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, c: int = 3, h: int = 16, w: int = 16, dtype=torch.float32,
           seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=gen(seed), dtype=dtype) * 2 - 1


def luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)


class TinyD(nn.Module):
    """A small smooth discriminator (softplus: its second derivatives are not all zero)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.softplus(self.conv1(x))
        x = F.softplus(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def r1_penalty(d: nn.Module, augment, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(augment(x)).sum(), x, create_graph=True)
    return grad.square().sum()


# --- ADA: identity and strength ------------------------------------------------------------

def test_p_zero_is_the_identity_and_draws_nothing() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=0.0)
    x = images()
    g = gen(1)
    state = g.get_state()
    out = pipe(x, g)
    assert out is x
    assert torch.equal(g.get_state(), state)


def test_p_one_changes_every_image_and_keeps_shape_and_dtype() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images()
    out = pipe(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert ((out - x).flatten(1).abs().amax(dim=1) > 1e-3).all()


def test_images_without_a_transform_in_the_draw_pass_through_bit_exactly() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=0.2)
    x = images(n=64)
    params = pipe.sample_params(x.shape, gen(3))
    out = pipe.apply(x, params)
    eye3, eye4 = torch.eye(3, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    untouched = ((params.dihedral == eye3).flatten(1).all(1)
                 & (params.geometric == eye3).flatten(1).all(1)
                 & (params.color == eye4).flatten(1).all(1))
    assert 0 < int(untouched.sum()) < 64
    assert torch.equal(out[untouched], x[untouched])
    assert not torch.equal(out[~untouched], x[~untouched])


def test_p_setter_validates() -> None:
    pipe = AugmentPipe.from_preset("bgc")
    pipe.p = 0.25
    assert pipe.p == 0.25
    pipe.p = torch.tensor(0.5)
    assert pipe.p == 0.5
    for bad in (-0.1, 1.5, float("nan"), "0.3"):
        with pytest.raises(ConfigError, match="p must be"):
            pipe.p = bad


# --- ADA: single transforms ----------------------------------------------------------------

def test_xflip_flips_exactly_the_drawn_images() -> None:
    pipe = AugmentPipe(xflip=1, p=1.0)
    x = images(n=32)
    params = pipe.sample_params(x.shape, gen(2))
    out = pipe.apply(x, params)
    flipped = params.dihedral[:, 0, 0] < 0
    assert 0 < int(flipped.sum()) < 32
    assert torch.equal(out[flipped], x[flipped].flip(-1))
    assert torch.equal(out[~flipped], x[~flipped])


def test_rotate90_is_an_exact_rotation() -> None:
    pipe = AugmentPipe(rotate90=1, p=1.0)
    x = images(n=32)
    params = pipe.sample_params(x.shape, gen(2))
    out = pipe.apply(x, params)
    seen = set()
    for i in range(32):
        matches = [k for k in range(4) if torch.equal(out[i], torch.rot90(x[i], k, (-2, -1)))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_rotate90_of_non_square_images_permutes_half_turns_and_resamples_quarter_turns() -> None:
    pipe = AugmentPipe(rotate90=1, p=1.0)
    x = images(n=32, h=8, w=12)
    params = pipe.sample_params(x.shape, gen(2))
    out = pipe.apply(x, params)
    assert out.shape == x.shape
    assert (params.dihedral[:, 0, 1] == 0).all()  # no quarter turn in the permutation
    half = params.dihedral[:, 0, 0] < 0
    assert half.any()
    assert torch.equal(out[half], torch.rot90(x[half], 2, (-2, -1)))
    quarter = params.geometric[:, 0, 1] != 0
    assert quarter.any() and not (quarter & half).any()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_xint_is_an_integer_translation_with_reflected_borders(dtype, tol) -> None:
    pipe = AugmentPipe(xint=1, p=1.0)
    x = images(n=16, h=16, w=24, dtype=dtype)
    params = pipe.sample_params(x.shape, gen(4))
    out = pipe.apply(x, params)
    shift = -params.geometric[:, :2, 2]  # the inverse reads input at output - shift
    assert (shift == shift.round()).all() and (shift != 0).any()
    assert shift[:, 0].abs().max() <= round(0.125 * 24) and shift[:, 1].abs().max() <= 2
    padded = F.pad(x, [4, 4, 4, 4], mode="reflect")
    for i in range(16):
        tx, ty = int(shift[i, 0]), int(shift[i, 1])
        expected = padded[i, :, 4 - ty: 4 - ty + 16, 4 - tx: 4 - tx + 24]
        torch.testing.assert_close(out[i], expected, atol=tol, rtol=0)


def test_geometric_transforms_keep_a_constant_image_constant() -> None:
    # reflect padding + orthogonal filters: no dark borders, no change of level
    # (in the center: a rare strong zoom-out reads beyond the largest padding, zeros there)
    pipe = AugmentPipe.from_preset("bg", p=1.0)
    x = torch.full((16, 3, 16, 16), 0.5)
    out = pipe(x, gen(5))
    torch.testing.assert_close(out[..., 4:-4, 4:-4], x[..., 4:-4, 4:-4], atol=1e-5, rtol=0)


def smooth(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth test image as a function of centered pixel coordinates (periods > 20 px)."""
    return torch.sin(0.3 * x + 0.2 * y + 0.5) * 0.5 + torch.cos(0.25 * y - 0.1 * x) * 0.4


@pytest.mark.parametrize("transforms,tol", [
    ({"scale": 1, "aniso": 1, "xfrac": 1}, 0.015),
    # sym6's asymmetry shifts rotated content by about 0.1 pixel, as in NVlabs' pipe
    (ADA_PRESETS["bg"], 0.05),
])
def test_general_geometric_transforms_sample_where_the_matrix_says(transforms, tol) -> None:
    # out(p) = image(M p) for the composed inverse M, checked away from the borders
    # (a half-pixel error of the coordinate conventions would give errors of about 0.1)
    n, size = 32, 32
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    x = smooth(xs, ys).expand(n, 3, size, size).contiguous()
    pipe = AugmentPipe(p=1.0, **transforms)
    params = pipe.sample_params(x.shape, gen(17))
    out = pipe.apply(x, params)
    src = params.dihedral @ params.geometric @ torch.stack(
        [xs.flatten(), ys.flatten(), torch.ones(size * size, dtype=torch.float64)])
    expected = smooth(src[:, 0], src[:, 1]).reshape(n, size, size)
    inside = ((src[:, 0].abs() <= (size - 1) / 2 - 3)
              & (src[:, 1].abs() <= (size - 1) / 2 - 3)).reshape(n, size, size)
    assert inside.double().mean() > 0.3
    error = (out[:, 0] - expected).abs()[inside]
    assert error.max() < tol


def color_pipe(name: str, c: int = 3, n: int = 16):
    pipe = AugmentPipe(p=1.0, **{name: 1})
    x = images(n=n, c=c)
    params = pipe.sample_params(x.shape, gen(6))
    return x, params, pipe.apply(x, params)


def test_brightness_adds_a_constant() -> None:
    x, params, out = color_pipe("brightness")
    b = params.color[:, 0, 3].float()
    assert (b != 0).all() and abs(float(params.color[:, :3, 3].std(dim=1).max())) < 1e-12
    torch.testing.assert_close(out - x, b.view(-1, 1, 1, 1).expand_as(x), atol=1e-6, rtol=0)


def test_contrast_scales_around_zero() -> None:
    x, params, out = color_pipe("contrast")
    c = params.color[:, 0, 0].float()
    torch.testing.assert_close(out, x * c.view(-1, 1, 1, 1), atol=1e-6, rtol=0)


def test_lumaflip_negates_luma_and_keeps_chroma() -> None:
    x, params, out = color_pipe("lumaflip", n=32)
    flipped = params.color[:, 0, 0] != 1
    assert 0 < int(flipped.sum()) < 32
    torch.testing.assert_close(luma(out[flipped]), -luma(x[flipped]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out - luma(out), x - luma(x), atol=1e-6, rtol=0)
    assert torch.equal(out[~flipped], x[~flipped])


def test_hue_rotates_chroma_around_the_luma_axis() -> None:
    x, params, out = color_pipe("hue")
    torch.testing.assert_close(luma(out), luma(x), atol=1e-6, rtol=0)
    chroma_in, chroma_out = x - luma(x), out - luma(out)
    torch.testing.assert_close(chroma_out.norm(dim=1), chroma_in.norm(dim=1), atol=1e-5, rtol=0)
    assert (chroma_out - chroma_in).abs().max() > 0.1


def test_saturation_scales_chroma() -> None:
    x, params, out = color_pipe("saturation")
    torch.testing.assert_close(luma(out), luma(x), atol=1e-6, rtol=0)
    # chroma_out = s * chroma_in; s is the eigenvalue of the matrix off the luma axis
    v = torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    s = (params.color @ v)[:, 0].float()
    torch.testing.assert_close(out - luma(out), (x - luma(x)) * s.view(-1, 1, 1, 1),
                               atol=1e-5, rtol=0)


def test_gray_images() -> None:
    out = AugmentPipe.from_preset("bgc", p=1.0)(images(c=1), gen(7))
    assert out.shape == (8, 1, 16, 16) and torch.isfinite(out).all()
    # gray: lumaflip negates, brightness adds b, contrast scales; hue and saturation not drawn
    x, params, out = color_pipe("lumaflip", c=1, n=32)
    flipped = params.color[:, 0, 0] != 1
    assert 0 < int(flipped.sum()) < 32
    assert torch.equal(out[flipped], -x[flipped]) and torch.equal(out[~flipped], x[~flipped])
    x, params, out = color_pipe("brightness", c=1)
    b = params.color[:, 0, 3].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, x + b, atol=1e-6, rtol=0)
    x, params, out = color_pipe("contrast", c=1)
    c = params.color[:, 0, 0].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, x * c, atol=1e-6, rtol=0)
    params = AugmentPipe(hue=1, saturation=1, p=1.0).sample_params((4, 1, 8, 8), gen(0))
    assert torch.equal(params.color, torch.eye(4, dtype=torch.float64).repeat(4, 1, 1))


def test_other_channel_counts_work_for_geometric_transforms_only() -> None:
    x = images(c=2)
    assert AugmentPipe.from_preset("bg", p=1.0)(x, gen(0)).shape == x.shape
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels, got 2"):
        AugmentPipe.from_preset("bgc", p=1.0)(x, gen(0))


# --- ADA: probabilities and ranges ---------------------------------------------------------

N_STATS = 20000
P_STATS = 0.6


def changed_fraction(name: str, matrix: str) -> float:
    params = AugmentPipe(p=P_STATS, **{name: 1}).sample_params((N_STATS, 3, 64, 64), gen(8))
    m = getattr(params, matrix)
    if matrix == "geometric":  # fold the dihedral part in, as NVlabs' one matrix
        m = params.dihedral @ m
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    return float((m != eye).flatten(1).any(dim=1).double().mean())


@pytest.mark.parametrize("name,matrix,expected", [
    ("xflip", "geometric", 0.5 * P_STATS),
    ("rotate90", "geometric", 0.75 * P_STATS),
    # at 64 pixels a shift rounds to 0 with probability 1/16 per axis
    ("xint", "geometric", P_STATS * (1 - (1 / 16) ** 2)),
    ("scale", "geometric", P_STATS),
    ("rotate", "geometric", P_STATS),  # two rotations, each 1 - sqrt(1 - p): one of them p
    ("aniso", "geometric", P_STATS),
    ("xfrac", "geometric", P_STATS),
    ("brightness", "color", P_STATS),
    ("contrast", "color", P_STATS),
    ("lumaflip", "color", 0.5 * P_STATS),
    ("hue", "color", P_STATS),
    ("saturation", "color", P_STATS),
])
def test_each_transform_happens_with_its_probability(name, matrix, expected) -> None:
    # 4 standard deviations of a fraction of 20,000 draws is at most 0.0142
    assert changed_fraction(name, matrix) == pytest.approx(expected, abs=0.0142)


def test_parameter_ranges_match_nvlabs() -> None:
    n, shape = N_STATS, (N_STATS, 3, 64, 64)

    def applied(name: str):
        params = AugmentPipe(p=1.0, **{name: 1}).sample_params(shape, gen(10))
        return params

    g = applied("scale").geometric
    assert float(torch.log2(1 / g[:, 0, 0]).std()) == pytest.approx(0.2, rel=0.03)
    g = applied("aniso").geometric
    assert float(torch.log2(g[:, 1, 1]).std()) == pytest.approx(0.2, rel=0.03)
    g = applied("xfrac").geometric
    assert float((g[:, :2, 2] / 64).std()) == pytest.approx(0.125, rel=0.03)
    g = applied("xint").geometric
    assert int(g[:, :2, 2].abs().max()) == 8  # round(0.125 * 64)
    c = applied("brightness").color
    assert float(c[:, 0, 3].std()) == pytest.approx(0.2, rel=0.03)
    c = applied("contrast").color
    assert float(torch.log2(c[:, 0, 0]).std()) == pytest.approx(0.5, rel=0.03)
    c = applied("saturation").color
    s = (c @ torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64))[:, 0]
    assert float(torch.log2(s).std()) == pytest.approx(1.0, rel=0.03)
    c = applied("hue").color
    # the rotation angle around the luma axis: cos(theta) = (trace - 1) / 2
    cos = (c[:, :3, :3].diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    assert float(cos.mean()) == pytest.approx(0.0, abs=0.03)  # uniform over the full circle
    assert n == c.shape[0]


def test_presets_are_nvlabs_pipelines() -> None:
    assert set(ADA_PRESETS["bgc"]) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso",
                                      "xfrac", "brightness", "contrast", "lumaflip", "hue",
                                      "saturation"}
    assert all(v == 1 for v in ADA_PRESETS["bgc"].values())
    pipe = AugmentPipe.from_preset("bgc")
    assert (pipe.xint_max, pipe.scale_std, pipe.rotate_max, pipe.aniso_std, pipe.xfrac_std,
            pipe.brightness_std, pipe.contrast_std, pipe.hue_max, pipe.saturation_std) == (
        0.125, 0.2, 1, 0.2, 0.125, 0.2, 0.5, 1, 1)


# --- ADA: determinism, precision ------------------------------------------------------------

def test_same_seed_same_output_different_seed_different_output() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=0.8)
    x = images()
    a, b, c = pipe(x, gen(11)), pipe(x, gen(11)), pipe(x, gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_autocast_bfloat16_runs_the_pipe_in_float32() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images()
    ref = pipe(x, gen(13))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pipe(x, gen(13))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    half = pipe(x.bfloat16(), gen(13))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), ref, atol=0.1, rtol=0)


# --- ADA: gradients --------------------------------------------------------------------------

def test_gradcheck_with_respect_to_the_images() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images(n=1, h=8, w=8, dtype=torch.float64).requires_grad_()
    params = pipe.sample_params(x.shape, gen(14))
    assert not torch.equal(params.geometric, torch.eye(3, dtype=torch.float64)[None])
    fn = lambda t: pipe.apply(t, params)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_r1_double_backward_through_the_pipe() -> None:
    torch.manual_seed(0)
    d = TinyD().double()
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images(n=2, dtype=torch.float64)
    params = pipe.sample_params(x.shape, gen(15))
    augment = lambda t: pipe.apply(t, params)
    penalty = r1_penalty(d, augment, x)
    penalty.backward()
    grads = {name: p.grad for name, p in d.named_parameters()}
    for name, grad in grads.items():
        if name == "fc.bias":  # a constant offset does not change the gradient w.r.t. x
            assert grad is None or not grad.any()
            continue
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # central finite difference of the penalty in one weight of the first convolution
    eps, idx = 1e-6, (1, 2, 0, 1)
    weight = d.conv1.weight.data
    weight[idx] += eps
    plus = r1_penalty(d, augment, x).item()
    weight[idx] -= 2 * eps
    minus = r1_penalty(d, augment, x).item()
    weight[idx] += eps
    assert grads["conv1.weight"][idx].item() == pytest.approx((plus - minus) / (2 * eps),
                                                              rel=1e-5)


def test_gradients_flow_through_forward() -> None:
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images().requires_grad_()
    pipe(x, gen(16)).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_for_the_same_generator_and_r1_runs() -> None:
    # the draws come from the CPU generator, so the augmentation is the same on any device
    pipe = AugmentPipe.from_preset("bgc", p=1.0)
    x = images(n=4, h=32, w=32)
    cpu = pipe(x, gen(18))
    cuda = pipe(x.cuda(), gen(18))
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)
    d = TinyD().cuda()
    penalty = r1_penalty(d, lambda t: pipe(t, gen(19)), x.cuda())
    penalty.backward()
    assert torch.isfinite(d.conv1.weight.grad).all() and d.conv1.weight.grad.abs().sum() > 0
    diff = DiffAugment()
    torch.testing.assert_close(diff(x.cuda(), gen(20)).cpu(), diff(x, gen(20)))


# --- ADA: bad input ---------------------------------------------------------------------------

def test_bad_pipe_settings() -> None:
    with pytest.raises(ConfigError, match="xflip must be in \\[0, inf\\], got -1.0"):
        AugmentPipe(xflip=-1)
    with pytest.raises(ConfigError, match="unknown ADA pipeline 'bgcfnc'; choose from"):
        AugmentPipe.from_preset("bgcfnc")
    with pytest.raises(ValueError, match="expects images \\(N, C, H, W\\), got \\(3, 8, 8\\)"):
        AugmentPipe.from_preset("bgc", p=0.5)(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="floating point images, got torch.uint8"):
        AugmentPipe.from_preset("bgc", p=0.5)(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# --- the controller ---------------------------------------------------------------------------

def run_controller(ctrl: AdaController, logit: float, steps: int) -> list[float]:
    ps = []
    for _ in range(steps):
        ctrl.observe(torch.full((ctrl.batch_total, 1), logit))
        ctrl.step()
        ps.append(ctrl.p)
    return ps


def test_controller_rises_by_exactly_one_step_per_interval_and_saturates() -> None:
    ctrl = AdaController(target=0.6, ada_kimg=1, interval=4, batch_total=64)
    assert ctrl.step_size == 64 * 4 / 1000
    ps = run_controller(ctrl, 1.0, 24)
    assert ctrl.rt == 1.0
    expected = []
    for step in range(1, 25):
        expected.append(min((step // 4) * ctrl.step_size, 1.0))
    assert ps == pytest.approx(expected, abs=1e-12)
    assert ps[-1] == 1.0 and ps[3] > 0 and ps[2] == 0


def test_controller_falls_to_zero_below_target() -> None:
    ctrl = AdaController(target=0.6, ada_kimg=1, interval=2, batch_total=100, p=0.5)
    ps = run_controller(ctrl, -1.0, 8)
    assert ctrl.rt == -1.0
    assert ps == pytest.approx([0.5, 0.3, 0.3, 0.1, 0.1, 0.0, 0.0, 0.0], abs=1e-12)


def test_controller_rt_is_the_mean_sign_and_target_is_a_fixed_point() -> None:
    ctrl = AdaController(target=0.5, ada_kimg=100, interval=1, batch_total=4, p=0.2)
    ctrl.observe(torch.tensor([3.0, 1.0, 2.0, -4.0]))  # signs sum 2 of 4
    assert ctrl.step()
    assert ctrl.rt == 0.5 and ctrl.p == 0.2
    ctrl.observe(torch.tensor([3.0, 1.0, 2.0, 0.0]))  # sign(0) = 0: r_t = 0.75
    ctrl.step()
    assert ctrl.rt == 0.75 and ctrl.p == pytest.approx(0.2 + 4 / 100_000)


def test_controller_reduce_callback_sums_over_processes() -> None:
    calls = []

    def reduce(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.clone())
        other_rank = torch.tensor([-3.0, 4.0], dtype=t.dtype)  # 4 logits, all negative but 1
        return t + other_rank

    ctrl = AdaController(target=0.6, ada_kimg=1, interval=2, batch_total=8)
    ctrl.observe(torch.ones(4))
    assert not ctrl.step(reduce)
    ctrl.observe(torch.ones(4))
    assert ctrl.step(reduce)
    assert len(calls) == 1 and calls[0].tolist() == [8.0, 8.0]
    assert ctrl.rt == pytest.approx(5 / 12)
    assert ctrl.p == 0.0  # below target, clamped at 0


def test_controller_adjust_and_pending() -> None:
    ctrl = AdaController(batch_total=32)
    assert ctrl.pending().tolist() == [0.0, 0.0]
    assert not ctrl.adjust(0.0, 0)  # nothing observed: no change
    ctrl.observe(torch.tensor([1.0, -1.0, 2.0]))
    assert ctrl.pending().tolist() == [1.0, 3.0]
    with pytest.raises(NonFiniteError, match="nan"):
        ctrl.adjust(float("nan"), 3)


def test_controller_state_dict_round_trip_resumes_exactly() -> None:
    a = AdaController(target=0.6, ada_kimg=2, interval=4, batch_total=16)
    logits = [torch.randn(16, generator=gen(i)) + 0.8 for i in range(30)]
    for t in logits[:13]:
        a.observe(t)
        a.step()
    state = json.loads(json.dumps(a.state_dict()))
    assert set(state) == {"p", "rt", "steps", "sign_sum", "count", "adjustments"}
    assert state["steps"] == 1 and state["count"] == 16
    b = AdaController(target=0.6, ada_kimg=2, interval=4, batch_total=16)
    b.load_state_dict(state)
    for t in logits[13:]:
        for ctrl in (a, b):
            ctrl.observe(t)
            ctrl.step()
    assert a.state_dict() == b.state_dict() and a.adjustments == 7


def test_controller_bad_settings_and_states() -> None:
    for target in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match=f"target must be in \\(0, 1\\), got {target!r}"):
            AdaController(target=target, batch_total=4)
    with pytest.raises(ConfigError, match="interval must be an integer >= 1, got 0"):
        AdaController(interval=0, batch_total=4)
    with pytest.raises(ConfigError, match="batch_total must be an integer >= 1, got 2.5"):
        AdaController(batch_total=2.5)
    ctrl = AdaController(batch_total=4)
    good = ctrl.state_dict()
    with pytest.raises(CheckpointError, match="missing keys \\['p'\\]"):
        ctrl.load_state_dict({k: v for k, v in good.items() if k != "p"})
    with pytest.raises(CheckpointError, match="p must be in \\[0, 1\\], got 2.0"):
        ctrl.load_state_dict({**good, "p": 2.0})
    with pytest.raises(CheckpointError, match="steps must be an integer >= 0, got 'x'"):
        ctrl.load_state_dict({**good, "steps": "x"})


# --- DiffAugment ------------------------------------------------------------------------------

def test_diffaugment_translation_is_a_zero_padded_integer_shift() -> None:
    aug = DiffAugment("translation")
    x = images(n=16, h=16, w=24)
    params = aug.sample_params(x.shape, gen(20))
    out = aug.apply(x, params)
    (name, values), = params.steps
    shift = values["shift"]
    assert name == "translation" and shift[:, 0].abs().max() <= 2 and shift[:, 1].abs().max() <= 3
    assert (shift != 0).any()
    padded = F.pad(x, [3, 3, 2, 2])  # zeros
    for i in range(16):
        dy, dx = int(shift[i, 0]), int(shift[i, 1])
        assert torch.equal(out[i], padded[i, :, 2 + dy: 2 + dy + 16, 3 + dx: 3 + dx + 24])


def test_diffaugment_cutout_zeros_a_half_size_square() -> None:
    aug = DiffAugment("cutout")
    x = images(n=64, h=16, w=16) + 3  # no zeros of its own
    params = aug.sample_params(x.shape, gen(21))
    out = aug.apply(x, params)
    (_, values), = params.steps
    assert values["size"].tolist() == [8, 8]
    for i in range(64):
        r0, c0 = (int(v) for v in values["start"][i])
        mask = torch.ones(16, 16)
        mask[max(r0, 0): max(r0 + 8, 0), max(c0, 0): max(c0 + 8, 0)] = 0
        assert torch.equal(out[i], x[i] * mask)
    zeros = (out[:, 0] == 0).flatten(1).sum(dim=1)
    assert zeros.max() == 64 and zeros.min() > 0  # whole squares and clipped ones
    assert (values["start"] >= -4).all() and (values["start"] <= 12).all()


def test_diffaugment_color_ranges_and_formulas() -> None:
    aug = DiffAugment("color")
    params = aug.sample_params((N_STATS, 3, 4, 4), gen(22))
    (_, v), = params.steps
    for key, low, high in (("brightness", -0.5, 0.5), ("saturation", 0, 2),
                           ("contrast", 0.5, 1.5)):
        assert v[key].min() >= low and v[key].max() < high
        assert float(v[key].min()) == pytest.approx(low, abs=0.01)
        assert float(v[key].max()) == pytest.approx(high, abs=0.01)
    x = images(n=2)
    params = aug.sample_params(x.shape, gen(23))
    (_, v), = params.steps
    b, s, c = (v[k].float().view(-1, 1, 1, 1) for k in ("brightness", "saturation", "contrast"))
    y = x + b
    y = (y - luma(y)) * s + luma(y)
    y = (y - y.mean(dim=(1, 2, 3), keepdim=True)) * c + y.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(aug.apply(x, params), y)


def test_diffaugment_determinism_and_empty_policy() -> None:
    aug = DiffAugment()
    x = images()
    assert torch.equal(aug(x, gen(1)), aug(x, gen(1)))
    assert not torch.equal(aug(x, gen(1)), aug(x, gen(2)))
    assert DiffAugment("")(x, gen(1)) is x
    assert DiffAugment(" color , cutout ").policy == "color,cutout"


def test_diffaugment_gradients_and_r1() -> None:
    aug = DiffAugment()
    x = images(n=2, h=8, w=8, dtype=torch.float64).requires_grad_()
    params = aug.sample_params(x.shape, gen(24))
    fn = lambda t: aug.apply(t, params)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
    d = TinyD().double()
    r1_penalty(d, fn, x).backward()
    assert torch.isfinite(d.conv1.weight.grad).all() and d.conv1.weight.grad.abs().sum() > 0


def test_diffaugment_bad_policy() -> None:
    with pytest.raises(ConfigError, match="unknown DiffAugment policy 'colour' in "
                                          "'colour,cutout'; choose"):
        DiffAugment("colour,cutout")
    with pytest.raises(ConfigError, match="cutout_ratio must be in \\[0, 1\\], got 2"):
        DiffAugment(cutout_ratio=2)


# --- build_augment ----------------------------------------------------------------------------

def test_build_augment_kinds() -> None:
    x = images()
    for kind in ("none", "noaug", "NONE"):
        aug = build_augment(kind)
        assert aug.kind == "none" and isinstance(aug.module, NoAugment) and not aug.active
        assert aug.module(x, gen(0)) is x and not aug.step()
    fixed = build_augment("ada", p=0.3)
    assert isinstance(fixed.module, AugmentPipe) and fixed.module.p == 0.3
    assert fixed.controller is None
    adaptive = build_augment("ada", batch_total=64, ada_kimg=1, interval=1)
    assert adaptive.module.p == 0.0 and adaptive.controller is not None
    adaptive.controller.observe(torch.ones(64))
    assert adaptive.step()
    assert adaptive.module.p == adaptive.controller.p == pytest.approx(0.064)
    diff = build_augment("diffaugment", policy="translation")
    assert isinstance(diff.module, DiffAugment) and diff.module.policy == "translation"


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "adaptive"}, "unknown augment kind 'adaptive'; choose from none, ada, "
                           "diffaugment"),
    ({"kind": "ada", "target": 1.0, "p": 0.2}, "ada target must be in (0, 1), got 1.0"),
    ({"kind": "ada", "target": 0, "batch_total": 4}, "ada target must be in (0, 1), got 0.0"),
    ({"kind": "ada", "p": 1.5}, "augment p must be in [0, 1], got 1.5"),
    ({"kind": "diffaugment", "p": 0.5}, "augment p=0.5 applies to kind 'ada' only"),
    ({"kind": "ada"}, "adaptive ADA (augment p=None) needs batch_total"),
    ({"kind": "ada", "p": 0.1, "pipeline": "bgcf"}, "unknown ADA pipeline 'bgcf'"),
    ({"kind": "diffaugment", "policy": "flip"}, "unknown DiffAugment policy 'flip'"),
    ({"kind": "ada", "batch_total": 4, "interval": 0}, "interval must be an integer >= 1"),
])
def test_build_augment_bad_values(kwargs, message) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(ConfigError) as info:
        build_augment(kind, **kwargs)
    text = str(info.value)
    assert message in text and "\n" not in text
