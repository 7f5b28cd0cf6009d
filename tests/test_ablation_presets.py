"""The paper's ablation presets (supplementary Tables E and F): their layout, a few training
steps of tiny equivalents without dead parameters, and the paper's counting convention."""

from __future__ import annotations

import json

import pytest
import torch

from pixelfold.metrics import count_macs, count_params
from pixelfold.metrics.profile import mac_breakdown
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator, presets
from pixelfold.training.losses import discriminator_loss, generator_loss

#: The builder arguments of each ablation preset (the base model: none).
ABLATIONS: dict[str, dict] = {
    "pixelfolder-256": {},
    "pixelfolder-256-fold-deconv": {"grow": "deconv"},
    "pixelfolder-256-fold-deconv-sc": {"grow": "deconv", "shape_consistent": True},
    "pixelfolder-256-down-deconv": {"grow": "deconv", "reduce": "avgpool",
                                    "stage0_projection": 512},
    "pixelfolder-256-down-deconv-sc": {"grow": "deconv", "reduce": "avgpool",
                                       "stage0_projection": 512, "shape_consistent": True},
}

#: Widths of the tiny equivalents (those of the pixelfolder-tiny presets).
TINY = {1: 64, 2: 64, 4: 64, 8: 64, 16: 32, 32: 16, 64: 16}


def _tiny(name: str):
    kwargs = dict(ABLATIONS[name])
    if kwargs.get("reduce") == "avgpool":
        kwargs["stage0_projection"] = TINY[8]  # pooling keeps the width: project to it
    else:
        kwargs["stage0_projection"] = 4  # folded twice: 64 channels
    return presets.pixelfolder((8, 32), channels=TINY, z_dim=64, w_dim=64, mapping_layers=2,
                               **kwargs)


def _meta(spec) -> Generator:
    with torch.device("meta"):
        return Generator(spec)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_presets_are_the_builder_with_these_arguments(name):
    spec = presets.pixelfolder((16, 64, 256), **ABLATIONS[name])
    spec.name = name
    assert presets.get(name) == spec


def test_tiny_equivalents_have_the_layout_of_the_presets():
    """Same growth, reduction and mid widths (as a fraction of the block width) per stage."""
    for name in ABLATIONS:
        big, tiny = presets.get(name), _tiny(name)
        for a, b in zip((big.stages[0], big.stages[-1]), tiny.stages, strict=True):
            assert (a.grow, a.reduce, a.merge) == (b.grow, b.reduce, b.merge)
            assert [m / c for m, c in zip(a.block_mid_channels, a.block_channels, strict=True)] \
                == [m / c for m, c in zip(b.block_mid_channels, b.block_channels, strict=True)]


@pytest.mark.parametrize("name", [n for n in ABLATIONS if n != "pixelfolder-256"])
def test_tiny_ablation_trains_without_dead_parameters(name):
    """Two G + D steps (non-saturating logistic losses, Adam); after the first G backward
    every generator parameter has a non-zero gradient. (The base layout is
    pixelfolder-tiny-32, which the model and training tests train.)"""
    torch.manual_seed(0)
    G = Generator(_tiny(name))
    D = Discriminator(DiscriminatorSpec(resolution=32, channels={32: 16, 16: 32, 8: 32, 4: 32}))
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    for step in range(2):
        z = torch.randn(2, G.z_dim)
        d_opt.zero_grad(set_to_none=True)
        d_loss = discriminator_loss(D(real), D(G(z).detach()))
        d_loss.backward()
        d_opt.step()

        g_opt.zero_grad(set_to_none=True)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = generator_loss(D(G(torch.randn(2, G.z_dim))))
        g_loss.backward()
        for p in D.parameters():
            p.requires_grad_(True)
        if step == 0:
            dead = [n for n, p in G.named_parameters()
                    if p.grad is None or not torch.count_nonzero(p.grad)]
            assert dead == [], f"{name}: parameters without gradient: {dead}"
        g_opt.step()
        assert torch.isfinite(d_loss) and torch.isfinite(g_loss)


# ---- the paper's counting convention -------------------------------------------------------

def _expected_paper_minus_pixelfold(spec) -> int:
    """Per image: each upsampling ModConv's transposed conv per output instead of per input
    position (``in * out * k * k * (4 H W - H W)``), minus its 4x4 blur (``out * 16 * 4 H W``)."""
    total = 0
    for i, st in enumerate(spec.stages):
        if st.grow != "deconv":
            continue
        cin = spec.block_input_channels(i)
        h, w = st.reduced_resolution
        for cout, mid in zip(st.block_channels, st.block_mid_channels, strict=True):
            k2 = st.kernel_size**2
            total += cin * mid * k2 * 3 * h * w - mid * len(spec.blur_kernel) ** 2 * 4 * h * w
            h, w, cin = 2 * h, 2 * w, cout
    return total


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_paper_convention_counts_transposed_convs_per_output_without_blur(name):
    spec = _tiny(name)
    G = _meta(spec)
    pixelfold, paper = count_macs(G), count_macs(G, convention="paper")
    assert paper - pixelfold == _expected_paper_minus_pixelfold(spec)
    m = mac_breakdown(G)
    assert m.total == pixelfold and m.count("paper") == paper
    assert m.count(per_output=False, with_blur=False) == pixelfold - m.blur
    if spec.stages[0].grow == "unfold":
        assert paper == pixelfold and m.blur == m.transposed_per_input == 0
    else:
        assert m.transposed_per_output == 4 * m.transposed_per_input


def test_table_f_fold_deconv_rows_in_the_paper_convention():
    """Fold + DeConv counted the paper's way: 86.48 GMACs against the paper's 86.53 (the base
    model: 23.74 against 23.78); pixelfold's own count is 48.11."""
    m = mac_breakdown(_meta(presets.get("pixelfolder-256-fold-deconv")))
    assert (m.total, m.count("paper")) == (48_111_501_312, 86_482_567_168)
    sc = mac_breakdown(_meta(presets.get("pixelfolder-256-fold-deconv-sc")))
    assert (sc.total, sc.count("paper")) == (14_148_710_400, 23_741_476_864)
    with pytest.raises(ValueError, match="convention must be one of"):
        count_macs(_meta(_tiny("pixelfolder-256")), convention="Paper")


def test_profile_reports_both_conventions(capsys):
    from pixelfold.cli import main
    from pixelfold.tools import format_profile, profile_generator

    torch.manual_seed(0)
    G = Generator(_tiny("pixelfolder-256-fold-deconv-sc"))
    r = profile_generator(G, warmup=0, iters=1, convention="paper")
    assert r["gmacs"] == pytest.approx(count_macs(G) / 1e9)
    assert r["gmacs_paper"] == pytest.approx(count_macs(G, convention="paper") / 1e9)
    assert r["params_paper"] == count_params(G, convention="paper") > r["params"]
    assert "GMACs (paper)" in format_profile(r)
    assert "gmacs_paper" not in profile_generator(G, warmup=0, iters=1)

    code = main(["profile", "pixelfolder-tiny-32", "--convention", "paper", "--json",
                 "--warmup", "0", "--iters", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["convention"] == "paper"
    assert out["params_paper"] == out["params"] + 8_256  # the tiny layout's unused merge conv
    assert out["gmacs_paper"] == out["gmacs"]  # no transposed convolutions
    assert main(["profile", "pixelfolder-tiny-32", "--convention", "flops"]) == 2
    assert "invalid choice: 'flops'" in capsys.readouterr().err


def test_per_input_count_is_what_the_flop_counter_measures():
    """``transposed_per_input`` (a formula) equals the ATen count of the transposed
    convolutions, so the conventions differ exactly by the documented terms."""
    from torch.utils.flop_counter import FlopCounterMode

    G = _meta(_tiny("pixelfolder-256-fold-deconv-sc"))
    counter = FlopCounterMode(display=False)
    with counter:
        G(torch.zeros(1, G.z_dim, device="meta"))
    counts = {k: {str(op): n for op, n in v.items()} for k, v in counter.get_flop_counts().items()}
    convs = [k for k in counts if k.endswith(".conv0.conv")]
    assert len(convs) == 4
    measured = sum(counts[k]["aten.convolution"] - counts[f"{k}.blur"]["aten.convolution"]
                   for k in convs) // 2
    blur = sum(counts[f"{k}.blur"]["aten.convolution"] for k in convs) // 2
    m = mac_breakdown(G)
    assert (m.transposed_per_input, m.blur) == (measured, blur)
