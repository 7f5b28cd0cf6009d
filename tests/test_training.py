"""Training with Accelerate on CPU: data handling, a few real steps, exact resume, NaN stop,
2-process runs and the recipes' defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.models import Generator
from pixelfold.training import (
    GANTrainer,
    ImageDataset,
    NonFiniteLossError,
    TrainConfig,
    load_image_dataset,
    parse_args,
    preprocess_image,
)

from .training_helpers import (  # noqa: F401
    D_CHANNELS,
    _config,
    _write_images,
    assert_same_weights,
    reset_accelerate,
    resumed_run,
)


@pytest.fixture(autouse=True)
def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# ---------------------------------------------------------------- data


def test_preprocess_converts_modes_and_crops():
    for mode in ["RGB", "L", "RGBA", "CMYK", "LA", "I;16"]:
        img = Image.new(mode, (50, 30))
        out = preprocess_image(img, 16)
        assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    white = preprocess_image(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), 8)
    assert torch.allclose(white, torch.ones(3, 8, 8))  # transparent -> white background
    gray = preprocess_image(Image.new("L", (8, 8), 0), 8)
    assert torch.allclose(gray, -torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match="resize_filter must be one of"):
        preprocess_image(Image.new("RGB", (8, 8)), 8, resize_filter="area")


def test_center_crop_keeps_the_middle():
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, 10:20] = 255
    out = preprocess_image(Image.fromarray(arr), 10, resize_filter="nearest")
    assert torch.allclose(out, torch.ones(3, 10, 10))


def test_image_folder_skips_bad_files(tmp_path, caplog):
    folder = _write_images(tmp_path / "images")
    ds = load_image_dataset(folder)
    data = ImageDataset(ds, 32)
    with caplog.at_level("WARNING"):
        images = [data[i] for i in range(len(data))]
    assert len(images) == 14 and all(x.shape == (3, 32, 32) for x in images)
    assert data.skipped == 2
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == 1


def test_saved_dataset_folder_and_column_errors(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"picture": [Image.new("RGB", (8, 8))] * 3, "y": [0, 1, 2]},
                                    features=datasets.Features({"picture": datasets.Image(),
                                                                "y": datasets.Value("int64")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = load_image_dataset(tmp_path / "saved")
    assert ImageDataset(loaded, 8).column == "picture"
    with pytest.raises(ValueError, match=r"--image-column 'img' is not a column .*'picture'"):
        ImageDataset(loaded, 8, image_column="img")
    with pytest.raises(ValueError, match="has no image column"):
        ImageDataset(loaded.remove_columns("picture"), 8)
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_image_dataset(tmp_path / "missing" / "deeper")


# ---------------------------------------------------------------- training


def test_a_few_steps_write_everything(tmp_path):
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, d_reg_interval=1))
    out = trainer.train()
    run = tmp_path / "run"
    assert out == run / "generator_ema"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2",
                                                                       "checkpoint-4"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png",
                                                                   "step-0000004.png"]
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["kimg"] == pytest.approx(0.016)
    assert state["skipped_images"] == 2
    assert set(state["losses"]) >= {"loss/D", "loss/G", "loss/R1"}
    G = Generator.from_pretrained(out)
    ema = trainer.ema.module
    for k, v in ema.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k
    assert not torch.equal(G.mapping.w_avg, torch.zeros_like(G.mapping.w_avg))  # tracked
    # the EMA differs from the raw generator, which moved
    assert any(not torch.equal(a, b) for a, b in zip(ema.state_dict().values(),
                                                     trainer.G.state_dict().values(),
                                                     strict=True))
    assert Image.open(run / "samples" / "step-0000004.png").size == (2 * 32, 2 * 32)


def test_the_g_pass_computes_no_discriminator_gradient(tmp_path):
    """D is frozen in the G pass (as NVlabs and the authors): after a step D's gradients are
    still those of its last optimizer step, and D's parameters require grad again."""
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, d_reg_interval=2))
    seen = []
    trainer.opt_D.optimizer.register_step_post_hook(
        lambda opt, args, kwargs: seen.append([p.grad.clone() for p in trainer.D.parameters()]))
    for _ in range(2):  # step 0 runs R1 (its own optimizer step), step 1 does not
        trainer.train_step()
        after = [p.grad for p in trainer.D.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(after, seen[-1], strict=True))
        assert all(p.requires_grad for p in trainer.D.parameters())
    assert len(seen) == 3


def test_checkpoint_rotation_keeps_the_last_k(tmp_path):
    _write_images(tmp_path / "images")
    GANTrainer(_config(tmp_path, max_steps=6, checkpointing_steps=1,
                       checkpoints_total_limit=2)).train()
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["checkpoint-5", "checkpoint-6"]


@pytest.mark.parametrize("stop", [2, 3])
def test_resume_is_exact(tmp_path, stop):
    """Stopping after ``stop`` steps and resuming to step 5 gives bit-identical G, D and EMA
    weights to an uninterrupted 5-step run with the same seed: data order (mid-epoch with
    stop=2, at an epoch boundary with stop=3: 3 batches per epoch), flips, latents, style
    mixing, noise and lazy R1 all continue where they stopped."""
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    _write_images(tmp_path / "images")
    common = dict(checkpointing_steps=stop, style_mixing_prob=0.5, d_reg_interval=2)
    full = GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "full"), max_steps=5,
                              **common))
    full.train()
    reset()
    GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "split"), max_steps=stop,
                       **common)).train()
    reset()
    second = GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "split"), max_steps=5,
                                resume_from_checkpoint="latest", **common))
    assert second.state.step == 0
    second.train()
    assert second.state.step == 5
    assert_same_weights(full, second)
    state = json.loads((tmp_path / "split" / "trainer_state.json").read_text())
    assert state["step"] == 5 and state["kimg"] == pytest.approx(0.02)


def test_resume_latest_without_checkpoints_starts_fresh(tmp_path):
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, max_steps=1, resume_from_checkpoint="latest"))
    trainer.train()
    assert trainer.state.step == 1
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        trainer.resume(str(tmp_path / "nowhere"))


def test_non_finite_loss_stops_without_a_corrupt_checkpoint(tmp_path, monkeypatch):
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, max_steps=6))
    import pixelfold.training.trainer as trainer_module

    real = trainer_module.generator_loss

    def bad_after_two(logits):
        loss = real(logits)
        return loss * float("nan") if trainer.state.step >= 2 else loss

    monkeypatch.setattr(trainer_module, "generator_loss", bad_after_two)
    with pytest.raises(NonFiniteLossError, match="G loss is nan at step 2"):
        trainer.train()
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-2"]
    G = Generator.from_pretrained(tmp_path / "run" / "generator_ema")
    assert all(torch.isfinite(v).all() for v in G.state_dict().values())


def test_mismatched_resolution_is_an_error(tmp_path):
    _write_images(tmp_path / "images")
    with pytest.raises(ValueError, match="makes 32x32 images but --resolution is 64"):
        GANTrainer(_config(tmp_path, resolution=64))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_together(tmp_path):
    """A real 2-process gloo run through `accelerate launch`: both ranks take part, see world
    size 2, count 2x the images, end with identical (synchronized) weights, and a run stopped
    after 2 steps and resumed to 3 ends with the same weights as the uninterrupted one.
    (Plain `--cpu --num_processes 2` would silently run one process.)"""
    import subprocess
    import sys

    _write_images(tmp_path / "images")
    worker = Path(__file__).with_name("two_process_worker.py")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # DDP found every gradient in its parameter's layout (channels-last models included)
    assert "Grad strides do not match bucket view strides" not in proc.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all("MULTI_CPU" in r["distributed_type"] for r in ranks)
    assert ranks[0]["nimg"] == ranks[1]["nimg"] == 3 * 2 * 2
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert (tmp_path / "run" / "generator_ema" / "model.safetensors").is_file()
    # stopping after 2 steps and resuming to 3 continues exactly, each process with its own
    # RNG states (one file per rank), and the ranks stay in sync
    assert ranks[0]["rng_files"] == ["rng-0.safetensors", "rng-1.safetensors"]
    assert ranks[0]["resumed_digest"] == ranks[0]["digest"]
    assert ranks[1]["resumed_digest"] == ranks[1]["digest"]
    assert ranks[0]["latent_state"] != ranks[1]["latent_state"]


# ---------------------------------------------------------------- recipes and CLI


def _recipe_defaults(name: str) -> TrainConfig:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "recipes" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEFAULTS


def test_ffhq_recipe_defaults_are_the_authors():
    d = _recipe_defaults("ffhq256")
    assert d.preset == "pixelfolder-256" and d.resolution == 256
    assert (d.lr, d.betas, d.r1_gamma, d.d_reg_interval) == (0.002, (0.0, 0.99), 10.0, 16)
    assert (d.pl_weight, d.style_mixing_prob, d.ema_kimg) == (0.0, 0.0, 10.0)
    assert d.batch_size * 8 == 64 and d.hflip and d.jpeg_quality == 85
    from pixelfold.training import lazy_adam_params

    lr, betas = lazy_adam_params(d.lr, d.betas, d.d_reg_interval)
    assert lr == pytest.approx(0.002 * 16 / 17) and betas[1] == pytest.approx(0.99 ** (16 / 17))
    lr, betas = lazy_adam_params(d.lr, d.betas, d.g_reg_interval)
    assert lr == pytest.approx(0.0016) and betas[1] == pytest.approx(0.99 ** 0.8)
    for name in ("church256", "ffhq1024", "quickstart"):
        assert isinstance(_recipe_defaults(name), TrainConfig)


def test_parse_args_and_errors(capsys):
    cfg = parse_args(["--batch-size", "2", "--d-channels", "32:8,16:8,8:8,4:8",
                      "--no-hflip", "--mixed-precision", "bf16"])
    assert cfg.batch_size == 2 and cfg.d_channels == {32: 8, 16: 8, 8: 8, 4: 8}
    assert not cfg.hflip and cfg.mixed_precision == "bf16"
    assert cfg.cudnn_benchmark and not parse_args(["--no-cudnn-benchmark"]).cudnn_benchmark
    with pytest.raises(SystemExit):
        parse_args(["--resolution", "100"])
    assert "resolution must be a power of two, got 100" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--d-channels", "32-8"])


def test_bf16_gradient_accumulation_and_tensorboard(tmp_path):
    """bf16 autocast on CPU, 2 micro-batches per step, TensorBoard logs with scalars."""
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, mixed_precision="bf16", batch_size=2,
                                 gradient_accumulation_steps=2, max_steps=2,
                                 report_to="tensorboard", d_reg_interval=1))
    trainer.train()
    assert trainer.batch_total == 4 and trainer.state.nimg == 8
    assert all(np.isfinite(v) for v in trainer.state.last_losses.values())
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/D", "loss/G", "loss/R1", "kimg", "lr/G", "lr/D"} <= tags
    assert "samples" in acc.Tags()["images"]


def test_streaming_dataset(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (36, 36), (i * 20, 0, 0)) for i in range(6)]},
        features=datasets.Features({"image": datasets.Image()}))
    trainer = GANTrainer(_config(tmp_path, batch_size=2, max_steps=4, streaming=True),
                         dataset=ds.to_iterable_dataset())
    trainer.train()
    assert trainer.state.step == 4
    assert (tmp_path / "run" / "generator_ema" / "config.json").is_file()


@pytest.mark.parametrize("augment", ["ada", "diffaugment"])
def test_resume_is_exact_with_augmentation(tmp_path, augment):
    """Adaptive ADA (p and r_t moving every step) and DiffAugment: stopping after 2 steps
    and resuming to 4 gives the weights, p and r_t of an uninterrupted run."""
    _write_images(tmp_path / "images")
    common = dict(augment=augment, ada_interval=1, ada_kimg=0.01, checkpointing_steps=2,
                  d_reg_interval=2, ada_target=0.2)
    full = GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "full"), max_steps=4,
                              **common))
    full.train()
    second = resumed_run(tmp_path, 2, 4, **common)
    assert_same_weights(full, second)
    if augment == "ada":
        assert full.augment.controller.p > 0  # it moved
        assert second.augment.controller.state_dict() == full.augment.controller.state_dict()
        state = json.loads((tmp_path / "split" / "trainer_state.json").read_text())
        assert state["augment"]["augment/p"] == full.augment.controller.p
        saved = json.loads((tmp_path / "split" / "checkpoints" / "checkpoint-4" /
                            "checkpoint.json").read_text())["trainer_state"]["augment"]
        assert saved["p"] == full.augment.controller.p and saved["adjustments"] == 4


def test_auto_gamma_and_ema_follow_resolution_and_batch(tmp_path):
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, r1_gamma="auto", ema_kimg="auto", batch_size=4,
                                 gradient_accumulation_steps=2))
    assert trainer.r1_gamma == pytest.approx(0.0002 * 32 ** 2 / 8)
    assert trainer.ema_kimg == pytest.approx(8 * 10 / 32)
    cfg = parse_args(["--r1-gamma", "auto", "--ema-kimg", "auto", "--augment", "ada"])
    assert (cfg.r1_gamma, cfg.ema_kimg, cfg.augment) == ("auto", "auto", "ada")


from .test_metrics import inception_file  # noqa: E402,F401  (a random Inception, offline)


def test_metrics_during_training_are_real_metrics(tmp_path, inception_file,  # noqa: F811
                                                  monkeypatch, caplog):
    """One real evaluation (at the end of the run) through pixelfold.metrics, announced
    before it starts (it takes minutes on a CPU)."""
    import logging

    monkeypatch.setenv("PIXELFOLD_CACHE", str(tmp_path / "cache"))
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, max_steps=2, metrics="fid,kid", metrics_num_gen=10,
                                 metrics_num_real=10, inception_weights=inception_file))
    with caplog.at_level(logging.INFO, logger="pixelfold.training.trainer"):
        trainer.train()
    said = [r.getMessage() for r in caplog.records if r.name == "pixelfold.training.trainer"]
    assert any(m.startswith("step 2: computing fid, kid of 10 generated images") for m in said)
    run = tmp_path / "run"
    from pixelfold.training.evaluation import read_metrics_log

    (row,) = read_metrics_log(run / "metrics.jsonl")
    # 10 images make one KID subset of all of them: a value without a spread
    assert row["step"] == 2 and set(row["metrics"]) == {"fid", "kid"}
    assert row["protocol"]["fidelity"]["kid"].startswith("1 subset of 10 images")
    assert row["protocol"]["fidelity"]["num_generated"] == 10
    assert json.loads((run / "trainer_state.json").read_text())["best"]["value"] == \
        row["metrics"]["fid"]
    Generator.from_pretrained(run / "generator_ema-best")
    assert list((tmp_path / "cache" / "metrics").iterdir())  # the real features, cached


def test_metrics_interval_log_and_best_generator(tmp_path, monkeypatch, caplog):
    """The schedule, the log and the best generator, with a stand-in for the metrics."""
    from pixelfold.metrics import MetricsReport
    from pixelfold.training.evaluation import TrainingMetrics, read_metrics_log

    fids = iter([5.0, 3.0, 4.0])
    monkeypatch.setattr(TrainingMetrics, "check_weights", lambda self: None)
    monkeypatch.setattr(TrainingMetrics, "evaluate", lambda self, G, device: MetricsReport(
        fid=next(fids), protocol={"fidelity": {"num_generated": 7}}))
    _write_images(tmp_path / "images")
    trainer = GANTrainer(_config(tmp_path, max_steps=5, checkpointing_steps=5, metrics="fid",
                                 metrics_every_kimg=0.008))
    trainer.train()
    run = tmp_path / "run"
    rows = read_metrics_log(run / "metrics.jsonl")
    assert [(r["step"], r["metrics"]["fid"]) for r in rows] == [(2, 5.0), (4, 3.0), (5, 4.0)]
    assert trainer.state.best == {"metric": "fid", "value": 3.0, "step": 4, "kimg": 0.016}
    assert json.loads((run / "generator_ema-best" / "best.json").read_text())["step"] == 4
    saved = json.loads((run / "checkpoints" / "checkpoint-5" / "checkpoint.json").read_text())
    assert saved["trainer_state"]["best"]["value"] == 3.0
    with caplog.at_level("WARNING"):
        reset_accelerate()
        GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "other"), max_steps=2,
                           metrics="fid", metrics_every_kimg=100))
    assert any("longer than the run" in r.message for r in caplog.records)


def test_metrics_fail_before_training_without_weights(tmp_path, monkeypatch):
    import torch.hub

    from pixelfold.metrics import MissingWeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("PIXELFOLD_INCEPTION_WEIGHTS", raising=False)
    _write_images(tmp_path / "images")
    with pytest.raises(MissingWeightsError, match=r"--inception-weights"):
        GANTrainer(_config(tmp_path, metrics="fid"))
    assert not (tmp_path / "run").exists()
    from pixelfold.utils import ConfigError

    with pytest.raises(ConfigError, match=r"--metrics fid,bogus: unknown metric\(s\) bogus"):
        _config(tmp_path, metrics="fid,bogus")
    with pytest.raises(ConfigError, match=r"--best-metric 'precision' is not computed by "
                                          r"--metrics fid"):
        _config(tmp_path, metrics="fid", best_metric="precision")


def test_a_full_disk_while_logging_metrics_loses_no_earlier_row(tmp_path, monkeypatch):
    import errno

    import pixelfold.training.evaluation as evaluation
    from pixelfold.metrics import MetricsReport
    from pixelfold.training.evaluation import TrainingMetrics, read_metrics_log
    from pixelfold.utils import DiskFullError, disk_errors

    monkeypatch.setattr(TrainingMetrics, "check_weights", lambda self: None)
    monkeypatch.setattr(TrainingMetrics, "evaluate", lambda self, G, device: MetricsReport(
        fid=1.0, protocol={}))
    real_write = evaluation.atomic_write_text
    calls = []

    def write(path, text):
        calls.append(path)
        if len(calls) == 2:  # the second evaluation finds the disk full
            with disk_errors(path):
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, text)

    monkeypatch.setattr(evaluation, "atomic_write_text", write)
    _write_images(tmp_path / "images")
    with pytest.raises(DiskFullError, match=r"no space left on the device while writing "
                                            r".*metrics.jsonl"):
        GANTrainer(_config(tmp_path, max_steps=4, checkpointing_steps=4, metrics="fid",
                           metrics_every_kimg=0.008)).train()
    rows = read_metrics_log(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2]


def test_metrics_none_turns_a_recipes_metrics_off():
    """The quickstart evaluates at its end by default; ``--metrics none`` turns that off."""
    from pixelfold.training.config import parse_args

    defaults = _recipe_defaults("quickstart")
    assert defaults.metrics == "fid,kid" and defaults.metrics_num_gen == 1000
    assert parse_args(["--metrics", "none"], defaults).metrics is None
    assert TrainConfig(metrics="None").metrics is None and TrainConfig(metrics="").metrics is None
    assert parse_args([], defaults).metrics == "fid,kid"
