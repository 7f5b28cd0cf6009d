"""Losses, regularizers, lazy-regularization Adam settings, EMA and style mixing, checked
against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pixelfold.models import Discriminator, DiscriminatorSpec, Generator
from pixelfold.training import (
    EMA,
    discriminator_loss,
    ema_beta,
    generator_loss,
    lazy_adam_params,
    lazy_r1_loss,
    path_length_penalty,
    r1_penalty,
    style_mixing_ws,
)

# ---------------------------------------------------------------- adversarial losses


def test_losses_at_zero_logits():
    zeros = torch.zeros(5, 1)
    assert generator_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))


def test_losses_closed_form():
    real = torch.tensor([[1.5], [-0.5]])
    fake = torch.tensor([[0.3], [-2.0]])

    def softplus(v: float) -> float:
        return math.log1p(math.exp(v))

    g = (softplus(-0.3) + softplus(2.0)) / 2
    d = (softplus(-1.5) + softplus(0.5)) / 2 + (softplus(0.3) + softplus(-2.0)) / 2
    assert generator_loss(fake).item() == pytest.approx(g, rel=1e-6)
    assert discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-6)


def test_losses_push_logits_the_right_way():
    fake = torch.zeros(3, 1, requires_grad=True)
    generator_loss(fake).backward()
    assert (fake.grad < 0).all()  # G wants D(G(z)) up
    real = torch.zeros(3, 1, requires_grad=True)
    fake2 = torch.zeros(3, 1, requires_grad=True)
    discriminator_loss(real, fake2).backward()
    assert (real.grad < 0).all() and (fake2.grad > 0).all()


def test_bf16_logits_give_float32_losses():
    logits = torch.zeros(4, 1, dtype=torch.bfloat16)
    assert generator_loss(logits).dtype == torch.float32
    assert discriminator_loss(logits, logits).dtype == torch.float32


# ---------------------------------------------------------------- R1


def test_r1_linear_discriminator_closed_form():
    """D(x) = sum(a * x) has gradient a for every sample: R1 = sum(a²)."""
    a = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * a).flatten(1).sum(1, keepdim=True)
    assert r1_penalty(x, logits).item() == pytest.approx(a.square().sum().item(), rel=1e-6)


def test_r1_quadratic_discriminator_closed_form():
    """D(x) = 0.5 · sum(x²) has gradient x: R1 = mean over the batch of sum(x²)."""
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = 0.5 * x.square().flatten(1).sum(1)
    expected = x.detach().square().flatten(1).sum(1).mean()
    assert r1_penalty(x, logits).item() == pytest.approx(expected.item(), rel=1e-6)


def test_r1_is_differentiable_to_discriminator_weights():
    D = Discriminator(DiscriminatorSpec(resolution=8, channels={4: 8, 8: 4}))
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    penalty = r1_penalty(x, D(x))
    lazy_r1_loss(penalty, gamma=10.0, interval=16).backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_r1_under_bf16_autocast_close_to_fp32():
    D = Discriminator(DiscriminatorSpec(resolution=8, channels={4: 8, 8: 4}))
    x = torch.randn(4, 3, 8, 8)
    x32 = x.clone().requires_grad_()
    ref = r1_penalty(x32, D(x32))
    xbf = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(xbf)
        penalty = r1_penalty(xbf, logits)
    assert penalty.dtype == torch.float32
    assert torch.isfinite(penalty)
    assert penalty.item() == pytest.approx(ref.item(), rel=0.1)


def test_r1_needs_requires_grad():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(x, x.sum(dim=(1, 2, 3)))


def test_lazy_r1_loss_scale():
    p = torch.tensor(3.0)
    assert lazy_r1_loss(p, gamma=10.0, interval=16).item() == pytest.approx(3 * 5 * 16)
    assert lazy_r1_loss(p, gamma=10.0, interval=None).item() == pytest.approx(15.0)


# ---------------------------------------------------------------- path length


def _linear_generator(w_dim: int = 6, size: int = 4):
    weight = torch.randn(3 * size * size, w_dim)

    def synth(ws: torch.Tensor) -> torch.Tensor:
        return (ws.mean(1) @ weight.T).reshape(-1, 3, size, size)

    return synth, weight


def test_path_length_penalty_shapes_and_mean_update():
    weight = torch.randn(3 * 4 * 4, 6, requires_grad=True)
    ws = torch.randn(4, 5, 6, requires_grad=True)

    def synth() -> torch.Tensor:
        return torch.tanh(ws.mean(1) @ weight.T).reshape(-1, 3, 4, 4)

    penalty, new_mean = path_length_penalty(synth(), ws, 0.0, decay=0.01)
    assert penalty.shape == () and new_mean.shape == ()
    assert penalty.requires_grad and not new_mean.requires_grad
    assert penalty.item() >= 0 and new_mean.item() > 0
    penalty.backward()  # the penalty reaches the generator's weights
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    # with decay 1 the mean becomes the batch mean; with decay 0 it stays
    _, kept = path_length_penalty(synth(), ws, 2.5, decay=0.0)
    assert kept.item() == pytest.approx(2.5)
    _, batch_mean = path_length_penalty(synth(), ws, 2.5, decay=1.0,
                                        generator=torch.Generator().manual_seed(0))
    _, batch_mean2 = path_length_penalty(synth(), ws, 0.0, decay=1.0,
                                         generator=torch.Generator().manual_seed(0))
    assert batch_mean.item() == pytest.approx(batch_mean2.item())


def test_path_length_closed_form():
    """For a linear synthesis G(ws) = mean_i(ws_i) @ Wᵀ, Jᵀy for ws_i is Wᵀy / num_ws, so the
    path length is |Wᵀy| / num_ws, computable by hand for a fixed y."""
    synth, weight = _linear_generator()
    ws = torch.randn(2, 5, 6, requires_grad=True)
    images = synth(ws)
    gen = torch.Generator().manual_seed(3)
    penalty, new_mean = path_length_penalty(images, ws, 1.0, decay=0.25, generator=gen)
    y = torch.randn(images.shape, generator=torch.Generator().manual_seed(3)) / 4.0
    lengths = (y.flatten(1) @ weight).norm(dim=1) / 5
    mean = 1.0 + 0.25 * (lengths.mean() - 1.0)
    assert new_mean.item() == pytest.approx(mean.item(), rel=1e-5)
    assert penalty.item() == pytest.approx((lengths - mean).square().mean().item(), rel=1e-5)


# ---------------------------------------------------------------- Adam and EMA settings


def test_lazy_adam_params():
    lr, betas = lazy_adam_params(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    lr, betas = lazy_adam_params(0.002, (0.0, 0.99), 4)
    assert lr == pytest.approx(0.0016) and betas[1] == pytest.approx(0.99 ** 0.8)
    assert lazy_adam_params(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    assert lazy_adam_params(0.002, (0.0, 0.99), 0) == (0.002, (0.0, 0.99))


def test_ema_beta():
    assert ema_beta(32, 10.0) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(64) == pytest.approx(ema_beta(32) ** 2)  # the same half-life in images
    # ramp-up: early on the half-life is cur_nimg * rampup
    assert ema_beta(32, 10.0, ema_rampup=0.05, cur_nimg=1000) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(32, 10.0, ema_rampup=0.05, cur_nimg=10**7) == pytest.approx(ema_beta(32))
    assert ema_beta(32, 10.0, ema_rampup=0.05, cur_nimg=0) == 0.0


class _WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("w_avg", torch.zeros(2))


def test_ema_update_extremes_and_buffers():
    model = _WithBuffer()
    ema = EMA(model)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.w_avg.fill_(7.0)

    ema.update(model, beta=1.0)  # keep the average, but copy buffers
    assert torch.equal(ema.module.lin.weight, start["lin.weight"])
    assert torch.equal(ema.module.w_avg, torch.full((2,), 7.0))

    ema.update(model, beta=0.0)  # copy the model
    for k, v in model.state_dict().items():
        assert torch.equal(ema.state_dict()[k], v), k


def test_ema_update_is_a_lerp():
    model = _WithBuffer()
    ema = EMA(model)
    old = ema.module.lin.weight.clone()
    with torch.no_grad():
        model.lin.weight.add_(2.0)
    ema.update(model, beta=0.75)
    torch.testing.assert_close(ema.module.lin.weight, 0.75 * old + 0.25 * model.lin.weight)


def test_ema_state_dict_round_trip_and_mismatch():
    model = _WithBuffer()
    ema = EMA(model)
    other = EMA(_WithBuffer())
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.lin.weight, ema.module.lin.weight)
    with pytest.raises(ValueError, match="unwrapped model"):
        ema.update(nn.Sequential(model), beta=0.5)


# ---------------------------------------------------------------- style mixing


@pytest.fixture(scope="module")
def tiny_g() -> Generator:
    torch.manual_seed(0)
    return Generator.from_preset("pixelfolder-tiny-32")


def test_style_mixing_prob_0_is_plain_mapping(tiny_g):
    z = torch.randn(3, tiny_g.z_dim)
    ws = style_mixing_ws(tiny_g, z, 0.0)
    assert torch.equal(ws, tiny_g.mapping(z))
    state = torch.get_rng_state()
    style_mixing_ws(tiny_g.mapping, z, 0.0)
    assert torch.equal(torch.get_rng_state(), state)  # nothing random was drawn


def test_style_mixing_prob_1_mixes_after_a_cutoff(tiny_g):
    z = torch.randn(3, tiny_g.z_dim)
    plain = tiny_g.mapping(z)
    gen = torch.Generator().manual_seed(1)
    ws = style_mixing_ws(tiny_g, z, 1.0, generator=gen)
    assert ws.shape == plain.shape == (3, tiny_g.num_ws, tiny_g.w_dim)
    same = [torch.equal(ws[:, i], plain[:, i]) for i in range(tiny_g.num_ws)]
    cutoff = same.index(False)
    assert 1 <= cutoff < tiny_g.num_ws
    assert all(same[:cutoff]) and not any(same[cutoff:])
    # after the cutoff every index holds the same (second) w
    assert torch.equal(ws[:, cutoff:], ws[:, cutoff:cutoff + 1].expand_as(ws[:, cutoff:]))
    # reproducible with the same generator
    again = style_mixing_ws(tiny_g, z, 1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ws, again)


def test_style_mixing_cutoffs_cover_the_range():
    num_ws = 5

    def mapping(z: torch.Tensor) -> torch.Tensor:
        return z[:, None, :].expand(-1, num_ws, -1)

    z = torch.zeros(2, 3)  # the plain mapping is 0, the mixed part random
    gen = torch.Generator().manual_seed(0)
    cutoffs = set()
    for _ in range(60):
        ws = style_mixing_ws(mapping, z, 1.0, generator=gen)
        cutoffs.add(int((ws[0].abs().sum(1) == 0).sum()))
    assert cutoffs == {1, 2, 3, 4}


def test_style_mixing_probability_is_respected():
    def mapping(z: torch.Tensor) -> torch.Tensor:
        return z[:, None, :].expand(-1, 4, -1)

    gen = torch.Generator().manual_seed(0)
    z = torch.zeros(1, 2)
    mixed = sum(bool(style_mixing_ws(mapping, z, 0.3, generator=gen).abs().sum() > 0)
                for _ in range(400))
    assert 80 < mixed < 160  # 120 expected


def test_style_mixing_rejects_bad_prob():
    with pytest.raises(ValueError, match="prob must be in"):
        style_mixing_ws(lambda z: z[:, None], torch.zeros(1, 2), 1.5)
