"""Generator specs, presets, forward/backward, save/load and efficiency counts."""

from __future__ import annotations

import json

import pytest
import torch

from pixelfold.metrics import count_macs, count_params, module_costs, profile_table
from pixelfold.models import Generator, GeneratorSpec, StageSpec, presets, style_mix

HEAVY = {"cips-256", "pixelfolder-1024"}


def _meta(name: str) -> Generator:
    with torch.device("meta"):
        return Generator.from_preset(name)


# ---------------------------------------------------------------- exact published counts


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("pixelfolder-256", 20_318_814),   # authors' 20,843,614 minus the unused 524,800
        ("pixelfolder-512", 16_953_630),   # authors' 17,478,430 minus 524,800
        ("pixelfolder-1024", 20_616_296),  # authors' 21,141,096 minus 524,800
        ("cips-256", 44_317_092),
        ("pixelfolder-256-fold-deconv", 28_885_374),  # + 524,800 = 29.41M, the paper's table
    ],
)
def test_published_parameter_counts(name, params):
    G = _meta(name)
    assert count_params(G) == params


#: Every preset's parameters: pixelfold's count and the paper's convention (the authors' unused
#: first-stage merge conv of 524,800 included for PixelFolder layouts at 256 and up).
ALL_PARAMS = {
    "cips-256": (44_317_092, 44_317_092),
    "cips-tiny-32": (69_344, 69_344),
    "pixelfolder-1024": (20_616_296, 21_141_096),
    "pixelfolder-256": (20_318_814, 20_843_614),
    "pixelfolder-256-down-deconv": (29_439_774, 29_964_574),
    "pixelfolder-256-down-deconv-sc": (12_687_582, 13_212_382),
    "pixelfolder-256-fold-deconv": (28_885_374, 29_410_174),
    "pixelfolder-256-fold-deconv-sc": (12_133_182, 12_657_982),
    "pixelfolder-256-no-connection": (19_269_214, 19_269_214),
    "pixelfolder-256-no-coord": (19_925_598, 20_450_398),
    "pixelfolder-512": (16_953_630, 17_478_430),
    "pixelfolder-tiny-16": (66_534, 74_790),
    "pixelfolder-tiny-32": (177_336, 185_592),
    "pixelfolder-tiny-64": (237_608, 245_864),
}


def test_every_preset_parameter_count_is_pinned():
    assert sorted(ALL_PARAMS) == presets.names(), "pin the counts of a new preset here"
    for name, (params, paper) in ALL_PARAMS.items():
        G = _meta(name)
        assert (count_params(G), count_params(G, convention="paper")) == (params, paper), name


def test_paper_convention_parameters_are_the_authors_and_table_f():
    """With the unused merge conv, the counts are the authors' code's (measured on it) and the
    supplementary Table F's Fold rows (29.41M, 12.66M)."""
    from pixelfold.metrics.profile import unused_merge_params

    assert unused_merge_params(_meta("pixelfolder-256")) == 524_800
    assert unused_merge_params(_meta("cips-256")) == 0
    assert unused_merge_params(torch.nn.Linear(2, 2)) == 0
    assert round(ALL_PARAMS["pixelfolder-256-fold-deconv"][1] / 1e6, 2) == 29.41
    assert round(ALL_PARAMS["pixelfolder-256-fold-deconv-sc"][1] / 1e6, 2) == 12.66
    with pytest.raises(ValueError, match="'flops'"):
        count_params(_meta("pixelfolder-tiny-32"), convention="flops")


def test_shape_consistent_kernels_of_the_first_stage():
    """The supplementary's DeConv0 3x3x512x128 (upsampling 4x4x512 to 8x8x128, the shape an
    unfold gives) and DeConv1 3x3x128x512."""
    for name in ("pixelfolder-256-fold-deconv-sc", "pixelfolder-256-down-deconv-sc"):
        block = _meta(name).synthesis.stages[0].blocks[0]
        assert block.conv0.conv.up == 2 and block.conv1.conv.up == 1
        assert tuple(block.conv0.conv.weight.shape) == (128, 512, 3, 3)
        assert tuple(block.conv1.conv.weight.shape) == (512, 128, 3, 3)
        spec = presets.get(name)
        assert [list(st.mid_channels) for st in spec.stages] == [[128, 128], [128, 128],
                                                                 [64, 32]]


def test_mid_channels_spec_field():
    spec = presets.get("pixelfolder-256-fold-deconv-sc")
    data = spec.to_dict()
    assert data["stages"][0]["mid_channels"] == [128, 128]
    assert GeneratorSpec.from_json(spec.to_json()) == spec
    # left out when unset, so the configs of other specs are unchanged
    assert all("mid_channels" not in st for st in presets.get("pixelfolder-256").to_dict()
               ["stages"])
    assert "mid" in spec.summary()
    st = spec.stages[0]
    assert st.block_mid_channels == (128, 128) and st.block_first_channels == (128, 128)
    with pytest.raises(ValueError, match=r"mid_channels needs one width per block \(2\)"):
        StageSpec(resolution=16, block_channels=(8, 8), fourier_channels=4, mid_channels=(4,))
    with pytest.raises(ValueError, match=r"mid_channels must hold positive integers.*0"):
        StageSpec(resolution=16, block_channels=(8, 8), fourier_channels=4,
                  mid_channels=(4, 0))


@pytest.mark.parametrize("grow", ["unfold", "deconv", "nearest", "none"])
def test_mid_channels_set_the_width_after_each_growth(grow):
    """The first ModConv outputs mid (mid * 4 before an unfold); the second takes mid."""
    st = StageSpec(resolution=8, block_channels=(16, 8), fourier_channels=4,
                   input_channels=(4,), grow=grow, merge="none", mid_channels=(6, 3))
    G = Generator(GeneratorSpec(stages=(st,), z_dim=8, w_dim=8, mapping_layers=1))
    f = 4 if grow == "unfold" else 1
    for block, mid, out in zip(G.synthesis.stages[0].blocks, (6, 3), (16, 8), strict=True):
        assert block.conv0.conv.out_channels == mid * f
        assert (block.conv1.conv.in_channels, block.conv1.conv.out_channels) == (mid, out)
    img = G(torch.randn(2, 8))
    assert img.shape == (2, 3, *G.resolution)


def test_cips_coordinate_embedding_size():
    G = _meta("cips-256")
    assert G.synthesis.stages[0].coord_embedding.weight.numel() == 33_554_432


def test_pixelfolder_256_modconv_widths_match_reference():
    G = _meta("pixelfolder-256")
    widths = [(blk.conv0.conv.in_channels, blk.conv0.conv.out_channels,
               blk.conv1.conv.in_channels, blk.conv1.conv.out_channels)
              for st in G.synthesis.stages for blk in st.blocks]
    flat = [pair for w in widths for pair in ((w[0], w[1]), (w[2], w[3]))]
    assert flat == [(512, 512), (128, 512), (512, 512), (128, 512), (512, 512), (128, 512),
                    (512, 512), (128, 512), (512, 256), (64, 256), (256, 128), (32, 128)]
    assert G.num_ws == 13


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("pixelfolder-256", 23.74e9, 23.78e9), ("cips-256", 222.5e9, 223.4e9)],
)
def test_macs_per_image(name, low, high):
    G = _meta(name)  # FlopCounterMode counts on the meta device without computing
    assert low <= count_macs(G) <= high


def test_style_free_stage_inputs_are_computed_once_per_batch():
    """The positional encoding, the 1x1 input layers and the merge convolution's share of
    them do not depend on z: they run once per batch, so per-image MACs at batch 4 are lower
    by 3/4 of their cost."""
    G = _meta("pixelfolder-256")
    rows = {r.name: r.macs for r in module_costs(G, depth=4)}
    shared = sum(rows[f"synthesis.stages.{i}.{part}"] for i in range(3)
                 for part in ("fourier", "input_layers"))
    assert shared > 4e8
    for stage in G.synthesis.stages:
        if stage.merge is not None:  # its positional input channels, at the merge resolution
            h, w = stage.spec.reduced_resolution
            shared += stage.merge.conv.out_channels * stage.spec.reduced_channels * h * w
    assert count_macs(G, batch_size=1) - count_macs(G, batch_size=4) == pytest.approx(
        0.75 * shared, rel=1e-4)


def test_style_free_inputs_are_cached_without_autograd_until_weights_change():
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32").eval()
    z = torch.randn(2, G.z_dim)
    stage = G.synthesis.stages[-1]
    expected = G(z, noise_mode="const")  # autograd on: nothing cached
    assert stage._input_cache.value is None
    with torch.no_grad():
        torch.testing.assert_close(G(z, noise_mode="const"), expected)
        cached = stage._input_cache.value
        assert cached is not None
        G(z, noise_mode="const")
        assert stage._input_cache.value is cached  # reused
        stage.fourier.weight.mul_(1.5)  # an in-place change (optimizer step, load_state_dict)
        changed = G(z, noise_mode="const")
        assert stage._input_cache.value is not cached
    assert not torch.allclose(changed, expected)
    torch.testing.assert_close(changed, G(z, noise_mode="const").detach())
    with torch.inference_mode():
        torch.testing.assert_close(G(z, noise_mode="const"), changed)
        # a model created under inference_mode has no version counters: no cache, same output
        H = Generator(G.spec)
        H.load_state_dict(G.state_dict())
        torch.testing.assert_close(H(z, noise_mode="const"), changed)
        assert H.synthesis.stages[-1]._input_cache.value is None


def test_profile_table_lists_stages():
    G = Generator.from_preset("pixelfolder-tiny-32")
    rows = {r.name: r for r in module_costs(G, depth=3)}
    assert rows["(total)"].params == count_params(G)
    stage_macs = sum(rows[f"synthesis.stages.{i}"].macs for i in range(2))
    assert stage_macs + rows["mapping"].macs == pytest.approx(rows["(total)"].macs, rel=1e-6)
    assert "synthesis.stages.1" in profile_table(G, depth=3)


# ---------------------------------------------------------------- one test matrix over presets


@pytest.mark.parametrize("name", presets.names())
def test_preset_json_round_trip(name):
    spec = presets.get(name)
    data = json.loads(json.dumps(spec.to_dict()))
    back = GeneratorSpec.from_dict(data)
    assert back == spec
    assert all(isinstance(s, StageSpec) for s in back.stages)
    assert back.to_dict() == spec.to_dict()
    assert GeneratorSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("name", presets.names())
def test_preset_forward_backward_every_parameter_used(name):
    if name in HEAVY and not _heavy_enabled():
        pytest.skip("set PIXELFOLD_HEAVY_TESTS=1 for the 1024 and CIPS-256 forward/backward")
    torch.manual_seed(0)
    G = Generator.from_preset(name)
    z = torch.randn(1 if G.resolution[0] >= 256 else 2, G.z_dim)
    img = G(z)
    assert img.shape == (z.shape[0], 3, *G.resolution)
    assert torch.isfinite(img).all()
    img.square().mean().backward()
    unused = [n for n, p in G.named_parameters() if p.grad is None]
    assert unused == [], f"parameters without gradient: {unused}"


def _heavy_enabled() -> bool:
    import os

    return os.environ.get("PIXELFOLD_HEAVY_TESTS", "1") == "1"


@pytest.mark.parametrize("name", [n for n in presets.names() if "tiny" in n])
def test_preset_save_load_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    G = Generator.from_preset(name)
    with torch.no_grad():  # make the zero-initialized noise strengths non-trivial
        for p in G.parameters():
            p.add_(0.01 * torch.randn_like(p))
    G.save_pretrained(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json",
                                                                   "model.safetensors"]
    H = Generator.from_pretrained(tmp_path / "g")
    assert H.spec == G.spec
    for (k, a), (k2, b) in zip(G.state_dict().items(), H.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    z = torch.randn(3, G.z_dim)
    assert torch.equal(G(z, noise_mode="const"), H(z, noise_mode="const"))


def _layouts(module: torch.nn.Module) -> set[str]:
    """Layouts of the 4-D tensors with more than one channel and pixel (others are both)."""
    out = set()
    for t in list(module.parameters()) + list(module.buffers()):
        if t.ndim == 4 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1:
            out.add("nchw" if t.is_contiguous() else
                    "cl" if t.is_contiguous(memory_format=torch.channels_last) else "other")
    return out


def test_models_are_channels_last_by_default_and_saved_contiguous(tmp_path):
    from safetensors.torch import load_file

    from pixelfold.models import Discriminator, DiscriminatorSpec

    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32")
    D = Discriminator(DiscriminatorSpec(resolution=32, channels={4: 8, 8: 8, 16: 8, 32: 8}))
    assert _layouts(G) == _layouts(D) == {"cl"}
    z = torch.randn(2, G.z_dim)
    image = G(z, noise_mode="const")
    assert image.is_contiguous(memory_format=torch.channels_last)
    # the same weights in NCHW give the same images
    H = Generator(G.spec, memory_format=torch.contiguous_format)
    H.load_state_dict(G.state_dict())
    assert _layouts(H) == {"nchw"}
    torch.testing.assert_close(H(z, noise_mode="const"), image, rtol=1e-4, atol=1e-5)
    assert _layouts(Generator(G.spec, memory_format=None)) == {"nchw"}
    # saved tensors are contiguous; a loaded model is channels-last again
    G.save_pretrained(tmp_path / "g")
    assert all(t.is_contiguous() for t in load_file(tmp_path / "g" / "model.safetensors").values())
    assert _layouts(Generator.from_pretrained(tmp_path / "g")) == {"cl"}
    with pytest.raises(ValueError, match="torch.preserve_format"):
        Generator(G.spec, memory_format=torch.preserve_format)
    with pytest.raises(ValueError, match="memory_format"):
        Discriminator(D.spec, memory_format="nhwc")  # type: ignore[arg-type]


# ---------------------------------------------------------------- generator API


def test_mapping_synthesis_and_noise_modes():
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32").eval()
    with torch.no_grad():
        for st in G.synthesis.stages:
            for blk in st.blocks:
                blk.conv0.noise.weight.fill_(0.3)
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (2, G.num_ws, G.w_dim)
    const = G.synthesis(ws, noise_mode="const")
    assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
    assert torch.equal(G(z, noise_mode="const"), const)
    assert not torch.equal(G.synthesis(ws, noise_mode="random"), const)
    assert not torch.equal(G.synthesis(ws, noise_mode="none"), const)
    img, stages = G.synthesis(ws, noise_mode="const", return_stages=True)
    assert torch.equal(img, const) and torch.equal(stages[-1], img)
    assert [s.shape[-1] for s in stages] == [8, 32]
    with pytest.raises(ValueError, match=r"ws of shape \(B, 9, 64\), got \(2, 8, 64\)"):
        G.synthesis(ws[:, :8])
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="zero")


def test_truncation():
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32")
    G.mapping.estimate_w_avg(500)
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=4)
    full = G.mapping(z)
    assert torch.equal(cut[:, 4:], full[:, 4:]) and not torch.equal(cut[:, :4], full[:, :4])


def test_style_mixing_is_stagewise():
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-64").eval()
    a, b = G.mapping(torch.randn(1, 64)), G.mapping(torch.randn(1, 64))
    ranges = G.synthesis.style_ranges()
    assert [(r.start, r.stop) for r in ranges] == [(0, 5), (4, 9), (8, 13)]
    mixed = style_mix(a, b, ranges[1])
    assert torch.equal(mixed[:, 4:9], b[:, 4:9]) and torch.equal(mixed[:, :4], a[:, :4])
    assert torch.equal(style_mix(a, b, 6)[:, 6:], b[:, 6:])
    # changing the styles of stage 2 leaves the RGB of stages 0 and 1 untouched
    _, sa = G.synthesis(a, noise_mode="const", return_stages=True)
    _, sm = G.synthesis(style_mix(a, b, range(9, 13)), noise_mode="const", return_stages=True)
    assert torch.equal(sa[0], sm[0]) and torch.equal(sa[1], sm[1])
    assert not torch.equal(sa[2], sm[2])
    with pytest.raises(ValueError, match="outside"):
        style_mix(a, b, range(10, 20))


def test_compile_fullgraph_tiny_generator():
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32").eval()
    z = torch.randn(2, G.z_dim)
    compiled = torch.compile(G, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z, noise_mode="const"), G(z, noise_mode="const"))


# ---------------------------------------------------------------- spec validation


def _stage(**kw):
    base = dict(resolution=16, block_channels=(32, 32), fourier_channels=8,
                input_channels=(2,), merge="none")
    base.update(kw)
    return StageSpec(**base)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _stage(kernel_size=2), "StageSpec: kernel_size must be odd, got 2"),
        (lambda: _stage(grow="pixelshuffle"), "StageSpec: grow must be one of"),
        (lambda: _stage(fourier_channels=0), "both 0: the stage has no input"),
        (lambda: _stage(resolution=(16, 0)), "resolution must be a positive int"),
        (lambda: GeneratorSpec(stages=(_stage(block_channels=(30, 32)),)),
         r"stage 0: block_channels\[0\] = 30 is not divisible by reduce_factor² = 4"),
        (lambda: GeneratorSpec(stages=(_stage(resolution=18),)),
         "stage 0: resolution 18x18 is not divisible by"),
        (lambda: GeneratorSpec(stages=(_stage(merge="add"),)),
         "stage 0: merge must be 'none' for the first stage, got 'add'"),
        (lambda: GeneratorSpec(stages=(_stage(), _stage(resolution=128, merge="concat"))),
         r"stage 1: resolution 128x128 reduced by 4 gives \(32, 32\), which does not chain"),
        (lambda: GeneratorSpec(stages=(_stage(), _stage(resolution=128))),
         r"stage 1: resolution gives a first RGB at \(64, 64\), which is neither"),
        (lambda: GeneratorSpec(stages=(_stage(), _stage(resolution=64, merge="add",
                                                            input_channels=(4,)))),
         "stage 1: input_channels gives 64 channels after reduction but merge='add' needs"),
        (lambda: GeneratorSpec(stages=()), "GeneratorSpec: stages must be a non-empty"),
        (lambda: GeneratorSpec.from_dict({"stages": [], "depth": 3}),
         r"unknown field\(s\) \['depth'\]"),
        (lambda: GeneratorSpec(stages=({"resolution": 16, "block_channels": [32], "x": 1},)),
         r"stage 0: StageSpec: unknown field\(s\) \['x'\]"),
    ],
)
def test_spec_validation_errors_name_stage_and_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_rectangular_generator():
    spec = GeneratorSpec(
        stages=(StageSpec(resolution=(8, 16), block_channels=(16, 16), fourier_channels=8,
                          coord_embedding_channels=4, input_channels=(8, 1), merge="none"),
                StageSpec(resolution=(32, 64), block_channels=(16, 8), fourier_channels=8,
                          input_channels=(1,))),
        z_dim=16, w_dim=16, mapping_layers=1)
    G = Generator(spec)
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 64)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'pixelfolder-2048'; choose one of"):
        presets.get("pixelfolder-2048")


def test_unknown_preset_error_is_config_and_key_error_with_one_line():
    from pixelfold.utils import ConfigError, one_line

    with pytest.raises(presets.UnknownPresetError) as info:
        presets.get("bogus")
    exc = info.value
    assert isinstance(exc, ConfigError) and isinstance(exc, ValueError)
    assert isinstance(exc, KeyError)
    expected = "unknown preset 'bogus'; choose one of: " + ", ".join(presets.names())
    assert str(exc) == one_line(exc) == expected  # no KeyError quotes, one line
    with pytest.raises(KeyError):
        presets.get(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- non-finite and unsupported


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mapping_lr_mul", float("nan"), "GeneratorSpec: mapping_lr_mul must be finite, got nan"),
        ("mapping_lr_mul", float("inf"), "GeneratorSpec: mapping_lr_mul must be finite, got inf"),
        ("mapping_lr_mul", True, "mapping_lr_mul must be a finite positive number, got True"),
        ("mapping_lr_mul", 0.0, "mapping_lr_mul must be a finite positive number, got 0.0"),
        ("w_avg_beta", float("nan"), "GeneratorSpec: w_avg_beta must be finite, got nan"),
        ("w_avg_beta", float("-inf"), "GeneratorSpec: w_avg_beta must be finite, got -inf"),
        ("image_channels", 2, "GeneratorSpec: image_channels must be 1 \\(grayscale\\), 3 "
                              "\\(RGB\\) or 4 \\(RGBA\\), got 2"),
        ("image_channels", 5, "image_channels must be 1 \\(grayscale\\), 3"),
        ("name", 7, "GeneratorSpec: name must be a string or None, got 7"),
    ],
)
def test_generator_spec_rejects_non_finite_and_unsupported_fields(field, value, message):
    from pixelfold.utils import ConfigError

    data = presets.get("pixelfolder-tiny-32").to_dict()
    data[field] = value
    with pytest.raises(ConfigError, match=message):
        GeneratorSpec.from_dict(data)


def test_every_float_field_of_the_specs_is_checked_for_finiteness():
    """Whatever the field (present or future), a NaN in a spec is refused, naming it."""
    import dataclasses

    from pixelfold.models import DiscriminatorSpec
    from pixelfold.utils import ConfigError

    for cls, make in ((GeneratorSpec, lambda **kw: GeneratorSpec(stages=(_stage(),), **kw)),
                      (StageSpec, _stage),
                      (DiscriminatorSpec, DiscriminatorSpec)):
        for f in dataclasses.fields(cls):
            if f.name.startswith("_") or f.name == "stages":
                continue
            with pytest.raises(ConfigError, match=rf"{cls.__name__}: {f.name} must be finite"):
                make(**{f.name: float("nan")})
    with pytest.raises(ConfigError, match="DiscriminatorSpec: channels must be finite"):
        DiscriminatorSpec(resolution=8, channels={4: 8, 8: float("inf")})


def test_from_json_names_the_file_and_the_field(tmp_path):
    from pixelfold.utils import ConfigError

    good = presets.get("pixelfolder-tiny-32").to_json()
    path = tmp_path / "g.json"
    path.write_text(good.replace('"mapping_lr_mul": 0.01', '"mapping_lr_mul": NaN'))
    with pytest.raises(ConfigError, match=rf"^{path}: GeneratorSpec: mapping_lr_mul must be "
                                          rf"finite, got nan$"):
        GeneratorSpec.from_json(path)
    path.write_text(good.replace('"kernel_size": 3', '"kernel_size": 4', 1))
    with pytest.raises(ConfigError, match=rf"{path}: stage 0: StageSpec: kernel_size must be odd"):
        GeneratorSpec.from_json(str(path))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=rf"{path}: invalid JSON"):
        GeneratorSpec.from_json(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="is not a UTF-8 text"):
        GeneratorSpec.from_json(path)
    with pytest.raises(ConfigError, match="is a folder"):
        GeneratorSpec.from_json(tmp_path)
    with pytest.raises(FileNotFoundError):
        GeneratorSpec.from_json(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match=r"stage 0: StageSpec: missing field\(s\) "
                                          r"\['resolution'\]"):
        GeneratorSpec.from_dict({"stages": [{"block_channels": [32]}]})


def test_docs_presets_table_is_current():
    """docs/models/presets-table.md is generated by docs/scripts/presets_table.py."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "presets_table.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("preset", ["pixelfolder-tiny-32", "cips-tiny-32"])
def test_gradients_have_the_strides_of_their_parameters(preset):
    """DistributedDataParallel copies each gradient into a bucket view with its parameter's
    strides and warns ("grad strides do not match bucket view strides") when they differ,
    also for size-1 dimensions, where they describe the same memory. After a G step, a D step
    and an R1 pass, every gradient has its parameter's strides."""
    from pixelfold.models import Discriminator, DiscriminatorSpec
    from pixelfold.training import r1_penalty

    torch.manual_seed(0)
    G = Generator.from_preset(preset)
    D = Discriminator(DiscriminatorSpec(resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8}))
    D(G(torch.randn(4, G.z_dim))).sum().backward()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    r1_penalty(x, D(x)).backward()
    checked = 0
    for model in (G, D):
        for name, p in model.named_parameters():
            if p.grad is not None:
                assert p.grad.stride() == p.stride(), (name, p.stride(), p.grad.stride())
                checked += 1
    assert checked > 20


def test_generator_and_discriminator_export_to_onnx(tmp_path):
    """The whole default (channels-last, fast-path) generator and discriminator export with
    ``torch.onnx.export(dynamo=True)`` and onnxruntime reproduces them."""
    ort = pytest.importorskip("onnxruntime")
    from pixelfold.models import Discriminator, DiscriminatorSpec

    class Sample(torch.nn.Module):
        def __init__(self, G: Generator) -> None:
            super().__init__()
            self.G = G

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.G(z, noise_mode="const", truncation_psi=0.7)

    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32").eval()
    D = Discriminator(DiscriminatorSpec(resolution=32, channels={4: 16, 8: 16, 16: 8,
                                                                 32: 8})).eval()
    z = torch.randn(2, G.z_dim)
    for name, model, x in (("g", Sample(G).eval(), z), ("d", D, torch.randn(4, 3, 32, 32))):
        with torch.no_grad():
            expected = model(x)
            program = torch.onnx.export(model, (x,), dynamo=True)
        assert program is not None
        path = tmp_path / f"{name}.onnx"
        program.save(str(path))
        session = ort.InferenceSession(str(path))
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)
