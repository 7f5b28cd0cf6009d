"""``report_to``: TensorBoard, Weights & Biases (offline), both or none, through Accelerate's
trackers; a missing tracker package is one line before training; trackers leave the training
and its exact resume unchanged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main as recipe_main
from pixelfold.training.config import parse_args
from pixelfold.training.trainer import GANTrainer
from pixelfold.utils.errors import ConfigError

from .training_helpers import (
    _config,
    _write_images,
    assert_same_weights,
    resumed_run,
)


def wandb_records(path: Path):
    """The records of a W&B run file (``run-<id>.wandb``): a 7-byte header (``:W&B``, magic,
    version), then LevelDB-log chunks (CRC, length, type) in 32 KiB blocks, each record a
    ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the block's padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def wandb_history(path: Path) -> dict[int, dict[str, object]]:
    """Logged values by step of a W&B run file (W&B's own keys, ``_step`` and so on, left
    out)."""
    out: dict[int, dict[str, object]] = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                     for i in record.history.item}
            out.setdefault(record.history.step.num, {}).update(
                {k: v for k, v in items.items() if not k.startswith("_")})
    return out


def test_wandb_offline_logs_scalars_and_resume_stays_exact(tmp_path, monkeypatch):
    """report_to="all" with W&B offline: a run stopped at step 2 and resumed to 4 ends with the
    weights of an uninterrupted run without trackers; W&B's offline files hold the logged
    losses, learning rates and kimg of every step (both parts of the run under one W&B run
    id), the sample grids, and TensorBoard has its event files."""
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb, or the "
                                        "'tracking' extra): the W&B tracker is not tested")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    _write_images(tmp_path / "images")
    common = dict(checkpointing_steps=2, sample_every=2, log_every=1)
    full = GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "full"), max_steps=4,
                              **common))
    full.train()
    split = tmp_path / "split"
    second = resumed_run(tmp_path, 2, 4, report_to="all", **common)
    assert_same_weights(full, second)

    run_id = (split / "logs" / "wandb-run-id").read_text().strip()
    files = sorted((tmp_path / "wandb").rglob("run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)
    history: dict[int, dict[str, object]] = {}
    for f in files:
        for step, values in wandb_history(f).items():
            history.setdefault(step, {}).update(values)
    assert sorted(history) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert {"loss/D", "loss/G", "kimg", "lr/G", "lr/D"} <= set(history[step]), step
        assert history[step]["kimg"] == pytest.approx(step * 4 / 1000)
        assert history[step]["lr/G"] == pytest.approx(second.opt_G.param_groups[0]["lr"])
    for name, value in second.state.last_losses.items():
        assert history[4][name] == pytest.approx(value, rel=1e-6), name
    assert history[2]["samples/_type"] == "images/separated"  # the sample grid, as an image
    assert list((tmp_path / "wandb").rglob("media/images/samples_4_*.png"))
    assert list((split / "logs").rglob("events.out.tfevents.*"))  # and TensorBoard's


def test_missing_wandb_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    """report_to wandb (or all) without the package: a ConfigError naming what to install,
    raised before anything is built or written; the recipe prints it as one line, status 2."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "wandb" else real(name, *a, **k))
    _write_images(tmp_path / "images")
    for report_to in ("wandb", "all"):
        with pytest.raises(ConfigError, match=r"not installed: pip install wandb"):
            GANTrainer(_config(tmp_path, report_to=report_to))
    assert not (tmp_path / "run").exists()
    code = recipe_main(["--output-dir", str(tmp_path / "run"), "--dataset",
                        str(tmp_path / "images"), "--resolution", "32", "--report-to", "wandb",
                        "--no-progress-bar"], prog="quickstart.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("quickstart.py: error: report_to 'wandb'")
    assert "pip install wandb" in err[0]
    assert not (tmp_path / "run").exists()


def test_report_to_values(capsys):
    """The values and their trackers; another value is refused, naming it and the choices."""
    from pixelfold.training.config import tracker_names

    assert tracker_names("all") == ("tensorboard", "wandb")
    assert tracker_names("none") == ()
    assert parse_args(["--report-to", "wandb"]).report_to == "wandb"
    with pytest.raises(ConfigError, match=r"report_to must be one of tensorboard, wandb, all, "
                                          r"none, got 'mlflow'"):
        TrainConfig(report_to="mlflow")
    with pytest.raises(SystemExit):
        parse_args(["--report-to", "mlflow"])
    assert "invalid choice: 'mlflow'" in capsys.readouterr().err


def test_report_to_none_still_writes_metrics_jsonl(tmp_path, monkeypatch):
    """No tracker: no logs/ folder, and the evaluations are in metrics.jsonl all the same."""
    from pixelfold.metrics import MetricsReport
    from pixelfold.training.evaluation import TrainingMetrics, read_metrics_log

    monkeypatch.setattr(TrainingMetrics, "check_weights", lambda self: None)
    monkeypatch.setattr(TrainingMetrics, "evaluate", lambda self, G, device: MetricsReport(
        fid=7.0, protocol={"fidelity": {"num_generated": 7}}))
    _write_images(tmp_path / "images")
    GANTrainer(_config(tmp_path, max_steps=2, checkpointing_steps=2, metrics="fid",
                       report_to="none")).train()
    rows = read_metrics_log(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["metrics"]["fid"]) for r in rows] == [(2, 7.0)]
    assert not list((tmp_path / "run").rglob("events.out.tfevents.*"))
