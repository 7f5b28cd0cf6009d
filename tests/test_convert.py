"""Loading the authors' checkpoints: key mapping, shapes, errors, and the same images as an
independent re-implementation of their forward pass (tests/reference/authors_pixelfold.py)."""

from __future__ import annotations

import os

import pytest
import torch

from pixelfold.convert import infer_official_preset, load_official, official_key_map
from pixelfold.models import Generator
from tests.reference.authors_pixelfold import AuthorsPixelFolder, authors_checkpoint

SIZES = [256, 512] + ([1024] if os.environ.get("PIXELFOLD_HEAVY_TESTS", "1") == "1" else [])


def _randomized_oracle(size: int, seed: int = 0) -> AuthorsPixelFolder:
    """An oracle whose every parameter is non-trivial (biases, noise strengths, ...), so that a
    wrongly mapped tensor changes the image."""
    torch.manual_seed(seed)
    model = AuthorsPixelFolder(size).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("noise.weight"):
                p.uniform_(0.05, 0.2)
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def oracle_256():
    return _randomized_oracle(256)


def _const_noise_list(G: Generator) -> list[torch.Tensor]:
    return [blk.__getattr__(c).noise.noise_const for st in G.synthesis.stages
            for blk in st.blocks for c in ("conv0", "conv1")]


@pytest.mark.parametrize("size", SIZES)
def test_converted_model_reproduces_the_authors_forward(size, tmp_path):
    oracle = _randomized_oracle(size)
    path = tmp_path / f"pixelfolder-{size}.pt"
    torch.save(authors_checkpoint(oracle), path)
    G = load_official(path, w_avg_samples=1000)
    assert G.spec.name == f"pixelfolder-{size}"
    z = torch.randn(1, 512)
    with torch.no_grad():
        ours = G(z, noise_mode="none")
        theirs = oracle(z, noise_mode="none")
        # with noise: feed the oracle the converted model's constant noise images
        ours_noise = G(z, noise_mode="const")
        theirs_noise = oracle(z, noise=_const_noise_list(G))
    assert ours.shape == theirs.shape == (1, 3, size, size)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_noise, theirs_noise, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours, ours_noise, atol=1e-3)


def test_style_mixing_matches(oracle_256):
    G = load_official(authors_checkpoint(oracle_256), w_avg_samples=0)
    za, zb = torch.randn(2, 512), torch.randn(2, 512)
    with torch.no_grad():
        theirs = oracle_256([za, zb], inject_index=5, noise_mode="none")
        ws = G.mapping(za).clone()
        ws[:, 5:] = G.mapping(zb)[:, 5:]
        ours = G.synthesis(ws, noise_mode="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_truncation_matches_with_the_same_average(oracle_256):
    G = load_official(authors_checkpoint(oracle_256), w_avg_samples=0)
    avg = oracle_256.mean_latent(512)
    G.mapping.w_avg.copy_(avg[0])
    z = torch.randn(1, 512)
    with torch.no_grad():
        theirs = oracle_256(z, truncation=0.7, truncation_latent=avg, noise_mode="none")
        ours = G(z, truncation_psi=0.7, noise_mode="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_accepts_full_checkpoint_bare_state_dict_and_g(oracle_256):
    ckpt = authors_checkpoint(oracle_256)
    sd = oracle_256.state_dict()
    a = load_official(ckpt, w_avg_samples=0)
    b = load_official(sd, w_avg_samples=0)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    ckpt_g_only = {"g": ckpt["g"], "d": {}}
    with pytest.raises(ValueError, match="no 'g_ema' generator"):
        load_official(ckpt_g_only)
    load_official(ckpt_g_only, which="g", w_avg_samples=0)


def test_w_avg_is_estimated_and_conversion_is_deterministic(oracle_256):
    a = load_official(authors_checkpoint(oracle_256), w_avg_samples=2000)
    b = load_official(authors_checkpoint(oracle_256), w_avg_samples=2000)
    assert a.mapping.w_avg.abs().sum() > 0
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_key_map_covers_exactly_the_authors_keys(oracle_256):
    keys = set(oracle_256.state_dict())
    assert len(keys) == 127
    assert set(official_key_map(3)) == keys
    dropped = [k for k, v in official_key_map(3).items() if v is None]
    assert sorted(dropped) == sorted(
        ["posfolders.0.conv_merge.0.weight", "posfolders.0.conv_merge.1.bias"]
        + [f"to_rgbs.{j}.upsample.kernel" for j in range(6)])
    assert infer_official_preset(oracle_256.state_dict()) == "pixelfolder-256"


def _bad(sd, change):
    sd = dict(sd)
    change(sd)
    return sd


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.update({"convs.99.conv.weight": torch.zeros(1)}),
         r"unknown key\(s\) in the pixelfolder-256 checkpoint: \['convs.99.conv.weight'\]"),
        (lambda sd: sd.pop("convs.3.noise.weight"),
         r"lacks key\(s\): \['convs.3.noise.weight'\]"),
        (lambda sd: sd.update({"convs.3.activate.bias": torch.zeros(7)}),
         r"convs.3.activate.bias has shape \(7,\) but pixelfolder-256 needs \(512,\)"),
        (lambda sd: sd.update({"to_rgbs.0.upsample.kernel": torch.ones(4, 4)}),
         r"to_rgbs.0.upsample.kernel is not the \[1, 3, 3, 1\] upsampling kernel"),
        (lambda sd: sd.update({"convs.0.conv.weight": torch.zeros(512, 512, 3, 3)}),
         r"convs.0.conv.weight has shape \(512, 512, 3, 3\), expected \(1, out, in, k, k\)"),
        (lambda sd: sd.pop("input.input"), "not a PixelFolder generator state_dict"),
    ],
)
def test_errors_name_the_key(oracle_256, change, message):
    with pytest.raises(ValueError, match=message):
        load_official(_bad(oracle_256.state_dict(), change), w_avg_samples=0)


def test_file_errors(tmp_path, oracle_256):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_official(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read .*bad.pt as a PyTorch checkpoint"):
        load_official(bad)
    lst = tmp_path / "list.pt"
    torch.save([1, 2], lst)
    with pytest.raises(ValueError, match="holds a list, not a dict"):
        load_official(lst)
    with pytest.raises(ValueError, match="looks like 'pixelfolder-256', not 'pixelfolder-512'"):
        load_official(oracle_256.state_dict(), preset="pixelfolder-512")


def test_cli_convert(tmp_path, oracle_256, capsys):
    from pixelfold.cli import main

    src = tmp_path / "ckpt.pt"
    torch.save(authors_checkpoint(oracle_256), src)
    out = tmp_path / "converted"
    assert main(["convert", str(src), str(out), "--w-avg-samples", "100"]) == 0
    assert "pixelfolder-256 (20,318,814 parameters)" in capsys.readouterr().out
    G = Generator.from_pretrained(out)
    z = torch.randn(1, 512)
    with torch.no_grad():
        torch.testing.assert_close(G(z, noise_mode="none"), oracle_256(z, noise_mode="none"),
                                   rtol=1e-4, atol=1e-4)
    # errors: one line on stderr, exit 2
    assert main(["convert", str(tmp_path / "nope.pt"), str(out)]) == 2
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("pixelfold convert: error: no checkpoint file at")
    assert "exists and is not empty" in err[1] and len(err) == 2


# --- bad input: refused before the work, nothing written (issue 10) -----------------------------


def _cli(capsys, *argv):
    from pixelfold.cli import main

    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1] if err.strip() else ""


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the conversion itself starts."""
    import pixelfold.convert

    def forbidden(*args, **kwargs):
        raise AssertionError("the conversion ran although the output was unusable")

    monkeypatch.setattr(pixelfold.convert, "load_official", forbidden)




@pytest.fixture
def fake_pt(tmp_path):
    """Any existing file: the output checks come before reading it."""
    path = tmp_path / "in.pt"
    path.write_bytes(b"not read")
    return path


def test_cli_convert_onto_a_file(capsys, tmp_path, fake_pt, no_work):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code, line = _cli(capsys, fake_pt, target)
    assert code == 2
    assert line == f"pixelfold convert: error: OUTPUT_DIR {target} exists and is not a folder"
    assert target.read_text() == "keep me"


def test_cli_convert_under_a_file(capsys, tmp_path, fake_pt, no_work):
    (tmp_path / "file").write_text("x")
    code, line = _cli(capsys, fake_pt, tmp_path / "file" / "out")
    assert code == 2 and line.endswith(f"{tmp_path / 'file'} is not a folder")


def test_cli_convert_into_a_read_only_folder(capsys, fake_pt, readonly_dir, no_work):
    code, line = _cli(capsys, fake_pt, readonly_dir / "out")
    assert code == 2 and f"cannot write in {readonly_dir}" in line
    code, line = _cli(capsys, fake_pt, readonly_dir, "--overwrite")
    assert code == 2 and line.endswith("the folder is read-only (permission denied or a "
                                       "read-only file system)")
    assert list(readonly_dir.iterdir()) == []


@pytest.mark.parametrize("samples", ["-5", "0"])
def test_cli_convert_w_avg_samples_must_be_positive(capsys, tmp_path, fake_pt, no_work,
                                                    samples):
    code, line = _cli(capsys, fake_pt, tmp_path / "out", "--w-avg-samples", samples)
    assert code == 2
    assert line == f"pixelfold convert: error: --w-avg-samples must be >= 1, got {samples}"
    assert not (tmp_path / "out").exists()


def test_cli_convert_input_is_a_folder(capsys, tmp_path, no_work):
    code, line = _cli(capsys, tmp_path, tmp_path / "out")
    assert code == 2 and "is a folder; expected the authors' .pt checkpoint file" in line


def test_non_finite_weight_is_refused_naming_key_and_file(capsys, tmp_path, oracle_256):
    ckpt = authors_checkpoint(oracle_256)
    ckpt["g_ema"] = dict(ckpt["g_ema"])
    bad = ckpt["g_ema"]["convs.3.conv.weight"].clone()
    bad.view(-1)[7] = float("nan")
    ckpt["g_ema"]["convs.3.conv.weight"] = bad
    src = tmp_path / "nan.pt"
    torch.save(ckpt, src)
    code, line = _cli(capsys, src, tmp_path / "out")
    assert code == 2
    assert line == (f"pixelfold convert: error: the generator weights (g_ema) in {src} hold "
                    f"non-finite values (NaN or infinity): convs.3.conv.weight "
                    f"(1 of {bad.numel()})")
    assert not (tmp_path / "out").exists()
    from pixelfold.utils import NonFiniteError

    with pytest.raises(NonFiniteError, match="the generator weights hold non-finite"):
        load_official(ckpt["g_ema"], w_avg_samples=0)


def test_w_avg_must_come_out_finite(oracle_256):
    from pixelfold.utils import ConfigError, NonFiniteError

    state = dict(oracle_256.state_dict())
    for i in range(1, 9):  # finite, but the mapping network overflows float32
        state[f"style.{i}.weight"] = torch.full_like(state[f"style.{i}.weight"], 1e6)
    with pytest.raises(NonFiniteError, match="the average w estimated from 10 random z is not "
                                             "finite: the mapping network overflows"):
        load_official(state, w_avg_samples=10)
    with pytest.raises(ConfigError, match="w_avg_samples must be a non-negative integer, "
                                          "got -5"):
        load_official(state, w_avg_samples=-5)
