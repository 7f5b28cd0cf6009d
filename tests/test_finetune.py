"""Fine-tuning (issue 13): ``init_from`` a generator folder (with or without its
``discriminator/``), a training checkpoint or run folder, or an authors' ``.pt``; weights only
(fresh optimizers and step count), the EMA from the loaded EMA, FreezeD, mismatch errors in one
line, exact resume of a fine-tuned run without reading the init weights again."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from pixelfold.models import Discriminator, Generator
from pixelfold.training import (
    GANTrainer,
    TrainConfig,
    freeze_discriminator,
    load_init_weights,
)

from .training_helpers import D_CHANNELS, _config, _write_images, reset_accelerate


@pytest.fixture(autouse=True)
def _reset():
    reset_accelerate()
    yield
    reset_accelerate()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished 2-step tiny run (its checkpoint, generator_ema/ and images folder)."""
    tmp = tmp_path_factory.mktemp("source")
    _write_images(tmp / "images")
    reset_accelerate()
    GANTrainer(_config(tmp, max_steps=2, checkpointing_steps=2, seed=5)).train()
    reset_accelerate()
    return tmp


def _tree(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ckpt_state(folder, name):
    from safetensors.torch import load_file

    return load_file(str(folder / f"{name}.safetensors"))


def _finetune(tmp_path, source, **kw):
    _write_images(tmp_path / "images", n=8)
    base = dict(output_dir=str(tmp_path / "tuned"), init_from=str(
        source / "run" / "checkpoints" / "checkpoint-2"), seed=11)
    base.update(kw)
    return _config(tmp_path, **base)


def test_init_from_a_checkpoint_takes_weights_only(tmp_path, source):
    ckpt = source / "run" / "checkpoints" / "checkpoint-2"
    trainer = GANTrainer(_finetune(tmp_path, source, max_steps=2))
    for name, module in (("generator", trainer.G), ("generator_ema", trainer.ema.module),
                         ("discriminator", trainer.D)):
        assert _same(_tree(module), _ckpt_state(ckpt, name)), name
    # the EMA starts from the loaded EMA, not from G
    assert not _same(_tree(trainer.ema.module), _tree(trainer.G))
    # fresh step count, images seen and optimizers
    assert trainer.state.step == 0 and trainer.state.nimg == 0
    assert len(trainer.opt_G.state) == 0 and len(trainer.opt_D.state) == 0
    trainer.train()
    out = tmp_path / "tuned"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["kimg"] == pytest.approx(0.008) and state["resumes"] == []
    assert json.loads((out / "train_config.json").read_text())["init_from"] == str(ckpt)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]


def test_init_from_a_run_folder_takes_its_newest_checkpoint(tmp_path, source):
    trainer = GANTrainer(_finetune(tmp_path, source, init_from=str(source / "run")))
    ckpt = source / "run" / "checkpoints" / "checkpoint-2"
    assert _same(_tree(trainer.D), _ckpt_state(ckpt, "discriminator"))
    assert _same(_tree(trainer.ema.module), _ckpt_state(ckpt, "generator_ema"))


def test_init_from_a_generator_folder_with_and_without_its_discriminator(tmp_path, source):
    folder = tmp_path / "model"
    shutil.copytree(source / "run" / "generator_ema", folder)
    saved = _tree(Generator.from_pretrained(folder))
    torch.manual_seed(0)
    trainer = GANTrainer(_finetune(tmp_path, source, init_from=str(folder)))
    assert _same(_tree(trainer.G), saved) and _same(_tree(trainer.ema.module), saved)
    fresh_D = _tree(trainer.D)
    ckpt_D = _ckpt_state(source / "run" / "checkpoints" / "checkpoint-2", "discriminator")
    assert not _same(fresh_D, ckpt_D)  # no discriminator/: D starts afresh
    # with its discriminator/ subfolder (as pixelfold convert and push_to_hub write it)
    D = Discriminator(trainer.D.spec)
    D.load_state_dict(ckpt_D)
    D.save_pretrained(folder / "discriminator")
    reset_accelerate()
    trainer = GANTrainer(_finetune(tmp_path, source, init_from=str(folder),
                                   output_dir=str(tmp_path / "second")))
    assert _same(_tree(trainer.D), ckpt_D)
    assert _same(_tree(trainer.G), saved)


def test_freeze_d_keeps_the_frozen_blocks_bit_identical(tmp_path, source):
    trainer = GANTrainer(_finetune(tmp_path, source, freeze_d=2, max_steps=3, d_reg_interval=1))
    D = trainer.D
    frozen = {n for n, p in D.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in D.named_parameters()
                      if n.startswith(("from_rgb.", "blocks.0.", "blocks.1."))}
    in_opt = {id(p) for g in trainer.opt_D.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in D.parameters() if p.requires_grad}
    before = _tree(D)
    trainer.train()
    after = _tree(D)
    for name in before:
        if name in frozen:
            assert torch.equal(before[name], after[name]), name
        elif name.startswith(("blocks.2.", "final_conv.", "final_linear.", "out.")) \
                and name.endswith("weight"):
            assert not torch.equal(before[name], after[name]), name
    state = json.loads((tmp_path / "tuned" / "trainer_state.json").read_text())
    assert state["losses"]["loss/R1"] > 0  # R1 flows to the images through the frozen layers


def test_freeze_discriminator_counts_blocks_from_the_image():
    from pixelfold.models import DiscriminatorSpec

    D = Discriminator(DiscriminatorSpec(resolution=32, channels=D_CHANNELS))
    assert freeze_discriminator(D, 0) == []
    names = freeze_discriminator(D, 1)
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in names} == {"from_rgb.conv",
                                                                        "from_rgb.act",
                                                                        "blocks.0"}
    with pytest.raises(ValueError, match=r"--freeze-d must be in 0..3 at 32x32"):
        freeze_discriminator(D, 4)


def test_resume_of_a_finetuned_run_is_exact_and_reads_no_init_weights(tmp_path, source):
    init = tmp_path / "init"
    shutil.copytree(source / "run" / "checkpoints" / "checkpoint-2", init)
    common = dict(freeze_d=1, d_reg_interval=2)
    full = GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "full"),
                                max_steps=3, init_from=str(init), **common))
    full.train()
    reset_accelerate()
    GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "split"), max_steps=2,
                         init_from=str(init), **common)).train()
    shutil.rmtree(init)  # resuming must not need the init weights
    reset_accelerate()
    second = GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "split"),
                                  max_steps=3, init_from=None, resume_from_checkpoint="latest",
                                  **common))
    second.train()
    for a, b in ((full.G, second.G), (full.D, second.D), (full.ema.module, second.ema.module)):
        assert _same(_tree(a), _tree(b))
    config = json.loads((tmp_path / "split" / "train_config.json").read_text())
    assert config["init_from"] == str(init) and config["freeze_d"] == 1
    # another init_from cannot come in during the run (nor another freeze_d: a fixed setting)
    reset_accelerate()
    with pytest.raises(ValueError, match="cannot resume .* with changed fixed settings: "
                                         "init_from"):
        GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "split"),
                             max_steps=4, init_from=str(tmp_path / "other"),
                             resume_from_checkpoint="latest", **common)).train()


def test_resume_latest_without_a_checkpoint_starts_from_init_from(tmp_path, source):
    """A first run launched with --resume-from-checkpoint latest (as job scripts do) loads
    the init weights when it finds no checkpoint, and trains exactly as a run without it."""
    plain = GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "a"), max_steps=1))
    plain.train()
    reset_accelerate()
    latest = GANTrainer(_finetune(tmp_path, source, output_dir=str(tmp_path / "b"), max_steps=1,
                                  resume_from_checkpoint="latest"))
    latest.train()
    for a, b in ((plain.G, latest.G), (plain.D, latest.D),
                 (plain.ema.module, latest.ema.module)):
        assert _same(_tree(a), _tree(b))


def test_an_architecture_mismatch_is_one_line_naming_both(tmp_path, source):
    ckpt = source / "run" / "checkpoints" / "checkpoint-2"
    with pytest.raises(ValueError) as info:
        GANTrainer(_finetune(tmp_path, source, resolution=64, preset="pixelfolder-tiny-64",
                             d_channels={64: 16, **D_CHANNELS}))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--init-from {ckpt} is a 32x32 pixelfolder-tiny-32 model; this "
                              f"run trains pixelfolder-tiny-64 at 64x64 (they differ in ")
    assert message.endswith("to fine-tune it, train with --preset pixelfolder-tiny-32 "
                            "--resolution 32")
    reset_accelerate()
    with pytest.raises(ValueError) as info:
        GANTrainer(_finetune(tmp_path, source, d_channels={32: 8, 16: 8, 8: 8, 4: 8}))
    assert str(info.value) == (
        f"--init-from {ckpt} has a discriminator for 32x32 images with widths "
        f"32:16,16:32,8:32,4:32; this run's is for 32x32 with widths 32:8,16:8,8:8,4:8: pass "
        f"--d-channels 32:16,16:32,8:32,4:32")
    assert not (tmp_path / "tuned").exists()  # refused before the run folder is made


def test_cli_reports_bad_init_in_one_line(tmp_path, source, capsys):
    from pixelfold.training.cli import main

    _write_images(tmp_path / "images", n=8)
    base = ["--output-dir", str(tmp_path / "out"), "--dataset", str(tmp_path / "images"),
            "--resolution", "32", "--preset", "pixelfolder-tiny-32", "--d-channels",
            "32:16,16:32,8:32,4:32", "--batch-size", "4", "--max-steps", "1", "--report-to",
            "none", "--no-progress-bar"]
    assert main([*base, "--init-from", str(tmp_path / "nothing")], prog="train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train: error: --init-from {tmp_path / 'nothing'}: no such file or folder"]
    (tmp_path / "empty").mkdir()
    assert main([*base, "--init-from", str(tmp_path / "empty")], prog="train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is neither a save_pretrained folder" in err[0]
    assert main([*base, "--freeze-d", "1"], prog="train") == 2
    assert "--freeze-d 1 needs --init-from" in capsys.readouterr().err
    assert main([*base, "--freeze-d", "4", "--init-from", str(source / "run")],
                prog="train") == 2
    assert "freeze_d must be in 0..3 at resolution 32" in capsys.readouterr().err


def test_config_checks():
    with pytest.raises(ValueError, match="freeze_d must be in 0..6 at resolution 256"):
        TrainConfig(freeze_d=7, init_from="x")
    with pytest.raises(ValueError, match="init_from is empty"):
        TrainConfig(init_from=" ")
    assert TrainConfig(freeze_d=6, init_from="x").to_dict()["freeze_d"] == 6


def test_load_init_weights_refuses_a_pickle_with_a_hint(tmp_path):
    import argparse

    path = tmp_path / "pickled.pt"
    torch.save({"g_ema": {}, "args": argparse.Namespace(size=256)}, path)
    with pytest.raises(ValueError, match=r"convert it once with 'pixelfold convert "
                                         r"--allow-pickle .*pickled.pt FOLDER'"):
        load_init_weights(path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is a file but not an authors' checkpoint"):
        load_init_weights(tmp_path / "other.pt")


def _random_authors_d(size: int = 256):
    """The authors' discriminator with N(0, 1) weights, made without its (slow) init."""
    from tests.reference.authors_discriminator import AuthorsDiscriminator, blur_kernel

    with torch.device("meta"):
        D = AuthorsDiscriminator(size)
    D = D.to_empty(device="cpu")
    with torch.no_grad():
        for name, t in D.state_dict().items():
            t.copy_(blur_kernel()) if name.endswith("kernel") else t.normal_()
    return D


@pytest.mark.skipif(os.environ.get("PIXELFOLD_HEAVY_TESTS", "1") != "1",
                    reason="PIXELFOLD_HEAVY_TESTS=0")
def test_init_from_an_authors_checkpoint_converts_g_g_ema_and_d(tmp_path):
    from pixelfold.convert import load_official, load_official_discriminator
    from tests.reference.authors_discriminator import authors_checkpoint_with_d
    from tests.reference.authors_pixelfold import AuthorsPixelFolder

    torch.manual_seed(0)
    ckpt = authors_checkpoint_with_d(AuthorsPixelFolder(256), _random_authors_d())
    for key in ckpt["g_ema"]:  # an EMA that differs from G
        if key.startswith("style."):
            ckpt["g_ema"][key] = ckpt["g_ema"][key] * 1.01
    path = tmp_path / "authors.pt"
    torch.save(ckpt, path)
    _write_images(tmp_path / "images", n=4)
    trainer = GANTrainer(_config(tmp_path, resolution=256, preset="pixelfolder-256",
                                 d_channels=None, batch_size=2, init_from=str(path)))
    for which, module in (("g", trainer.G), ("g_ema", trainer.ema.module)):
        want = _tree(load_official(ckpt, which=which, w_avg_samples=0))
        have = _tree(module)
        assert torch.isfinite(have.pop("mapping.w_avg")).all()  # estimated from random z
        want.pop("mapping.w_avg")
        assert _same(have, want), which
    assert _same(_tree(trainer.D), _tree(load_official_discriminator(ckpt)))
    assert not _same(_tree(trainer.G), _tree(trainer.ema.module))
    assert trainer.state.step == 0 and len(trainer.opt_D.state) == 0
