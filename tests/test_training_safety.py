"""Nothing lost, nothing executed: the trainer's checkpoints hold no pickles, runs own their
folder, non-finite values are never saved, resumes are honest, crashes and full disks leave
a usable folder, Ctrl-C writes a checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.models import Generator
from pixelfold.training import GANTrainer, TrainConfig, preprocess_image
from pixelfold.training.checkpoint import (
    MANIFEST_NAME,
    Checkpoint,
    find_resumable,
    validate_checkpoint,
)
from pixelfold.utils import (
    CheckpointError,
    ConfigError,
    DiskFullError,
    NonFiniteError,
    RunFolderError,
    RunLock,
)

from .training_helpers import D_CHANNELS, _config, _write_images, reset_accelerate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset():
    reset_accelerate()
    yield
    reset_accelerate()


@pytest.fixture
def images(tmp_path) -> Path:
    return _write_images(tmp_path / "images")


_RUNS: dict[int, Path] = {}


@pytest.fixture(scope="module")
def _run_cache(tmp_path_factory):
    yield tmp_path_factory.mktemp("runs")
    _RUNS.clear()


@pytest.fixture
def trained(tmp_path, images, _run_cache):
    """``trained(steps)`` puts a finished run of ``steps`` steps (checkpoints every 2) in
    ``tmp_path / "run"``, trained once per module and copied."""

    def make(steps: int) -> Path:
        if steps not in _RUNS:
            base = _run_cache / f"steps{steps}"
            _write_images(base / "images")
            _train(base, max_steps=steps)
            _RUNS[steps] = base / "run"
        shutil.copytree(_RUNS[steps], tmp_path / "run", symlinks=True)
        return tmp_path / "run"

    return make


def _train(tmp_path: Path, **kw) -> GANTrainer:
    reset_accelerate()
    trainer = GANTrainer(_config(tmp_path, **kw))
    trainer.train()
    return trainer


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


class _Evil:
    """Unpickling this creates the file ``marker``: proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------- what a checkpoint holds


def test_a_checkpoint_holds_only_tensors_and_json(tmp_path, trained):
    trained(2)
    folder = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["checkpoint.json", "discriminator.safetensors", "discriminator_config.json",
                     "generator.safetensors", "generator_config.json",
                     "generator_ema.safetensors", "optimizers.safetensors", "rng-0.safetensors",
                     "train_config.json"]
    from safetensors import safe_open

    for path in folder.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and head[:1] != b"\x80", f"{path.name} looks like a pickle"
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
    ckpt = Checkpoint.open(folder)
    assert ckpt.step == 2 and ckpt.trainer_state["nimg"] == 8
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == set(names) - {MANIFEST_NAME}
    assert ckpt.optimizers()["G"]["param_groups"][0]["lr"] == pytest.approx(0.0016)


def test_an_old_pickle_checkpoint_is_never_loaded(tmp_path, trained, caplog):
    """A checkpoint in the old Accelerate layout whose pickle would create a marker file: the
    newest complete checkpoint is resumed instead, the pickle is never opened."""
    trained(2)
    marker = tmp_path / "marker"
    legacy = tmp_path / "run" / "checkpoints" / "checkpoint-9"
    legacy.mkdir()
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        with open(legacy / name, "wb") as f:
            pickle.dump({"x": _Evil(marker)}, f)
    with caplog.at_level("WARNING"):
        trainer = _train(tmp_path, max_steps=3, resume_from_checkpoint="latest")
    assert trainer.state.step == 3
    assert not marker.exists()
    assert any("checkpoint-9" in r.message and "pickles" in r.message for r in caplog.records)
    with pytest.raises(CheckpointError, match="older pixelfold with Accelerate's pickles"):
        _train(tmp_path, max_steps=12, resume_from_checkpoint=str(legacy))
    assert not marker.exists()


def test_checkpoint_files_get_the_umask_permissions(tmp_path, images):
    old = os.umask(0o022)
    try:
        _train(tmp_path, max_steps=2)
    finally:
        os.umask(old)
    run = tmp_path / "run"
    for path in [run / "checkpoints" / "checkpoint-2", run / "generator_ema"]:
        assert path.stat().st_mode & 0o777 == 0o755, path
        for f in path.iterdir():
            assert f.stat().st_mode & 0o777 == 0o644, f
    assert (run / "trainer_state.json").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- runs own their folder


def test_a_new_run_over_an_existing_run_is_refused(tmp_path, trained):
    trained(4)
    run = tmp_path / "run"
    before = _weights(run / "generator_ema")
    listing = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(RunFolderError, match=r"already holds a run at step 4 .*--resume-from-"
                                             r"checkpoint latest.*--overwrite"):
        _train(tmp_path, max_steps=2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == listing
    after = _weights(run / "generator_ema")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 4


def test_overwrite_starts_afresh_and_keeps_other_files(tmp_path, trained):
    trained(4)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    trainer = _train(tmp_path, max_steps=2, overwrite=True)
    run = tmp_path / "run"
    assert trainer.state.step == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 2
    assert (run / "notes.txt").read_text() == "mine"


def test_a_second_process_cannot_write_into_a_running_folder(tmp_path, images):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pixelfold.utils import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
         str(run)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"is in use by process {holder.pid} on "):
            _train(tmp_path, max_steps=1)
        assert not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock: the folder is free again, and the stale
    # lock file it left is taken over with a warning
    assert (run / ".lock").exists()
    trainer = _train(tmp_path, max_steps=1)
    assert trainer.state.step == 1
    assert not (run / ".lock").exists()


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path, images, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "then"}))
    with caplog.at_level("WARNING"):
        _train(tmp_path, max_steps=1)
    assert any("taking over the stale lock" in r.message and "999999" in r.message
               for r in caplog.records)
    lock = RunLock(run)
    lock.acquire()
    lock.release()


# ---------------------------------------------------------------- finite or not saved


def test_a_nan_gradient_is_never_saved(tmp_path, images):
    """A NaN gradient with a finite loss right before a checkpoint: the run stops naming the
    tensor and the step; the newest good checkpoint and generator_ema/ stay as they were."""
    reset_accelerate()
    trainer = GANTrainer(_config(tmp_path, max_steps=6, checkpointing_steps=2))
    name, param = next(iter(trainer.G.named_parameters()))

    def poison(grad):
        return grad * float("nan") if trainer.state.step == 3 else grad

    param.register_hook(poison)
    with pytest.raises(NonFiniteError, match=rf"the generator's {name} holds \d+ non-finite "
                                             rf"value\(s\) of \d+ at step 4.*nothing was saved "
                                             rf".*checkpoint-2, is untouched"):
        trainer.train()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert validate_checkpoint(run / "checkpoints" / "checkpoint-2") is None
    ema = _weights(run / "generator_ema")
    saved = Checkpoint.open(run / "checkpoints" / "checkpoint-2").model_state("generator_ema")
    assert all(torch.equal(ema[k], saved[k]) for k in saved)
    assert all(torch.isfinite(v).all() for v in ema.values())
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 2
    assert not list((run / "checkpoints").glob(".*"))


def test_nan_weights_in_a_checkpoint_are_refused(tmp_path, trained):
    from safetensors.torch import load_file, save_file

    trained(2)
    folder = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    state = load_file(str(folder / "generator.safetensors"))
    key = next(iter(state))
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, str(folder / "generator.safetensors"))
    manifest = json.loads((folder / MANIFEST_NAME).read_text())  # a consistent manifest
    from pixelfold.training.checkpoint import write_manifest

    write_manifest(folder, step=2, trainer_state=manifest["trainer_state"], num_processes=1)
    with pytest.raises(CheckpointError, match=rf"generator.safetensors: {key} holds non-finite"):
        _train(tmp_path, max_steps=3, resume_from_checkpoint="latest")


# ---------------------------------------------------------------- honest resume


def test_resume_refuses_changed_fixed_settings_in_one_line(tmp_path, trained):
    trained(2)
    with pytest.raises(CheckpointError) as info:
        _train(tmp_path, max_steps=3, resume_from_checkpoint="latest", batch_size=2,
               preset="cips-tiny-32", seed=4)
    message = str(info.value)
    assert "\n" not in message
    for part in ("batch_size 4 -> 2", "seed 3 -> 4",
                 "generator 'pixelfolder-tiny-32' -> 'cips-tiny-32'"):
        assert part in message, message
    assert "size mismatch" not in message
    with pytest.raises(CheckpointError, match=r"discriminator channels"):
        _train(tmp_path, max_steps=3, resume_from_checkpoint="latest",
               d_channels={32: 8, 16: 8, 8: 8, 4: 8})


def test_resume_applies_and_records_changed_adjustable_settings(tmp_path, trained):
    trained(2)
    trainer = _train(tmp_path, max_steps=3, resume_from_checkpoint="latest", lr=0.001,
                     r1_gamma=1.0)
    # the lazy-regularization correction on the new rate, in the restored optimizers
    assert trainer.opt_G.param_groups[0]["lr"] == pytest.approx(0.001 * 4 / 5)
    assert trainer.opt_D.param_groups[0]["lr"] == pytest.approx(0.001 * 2 / 3)
    run = tmp_path / "run"
    (resume,) = json.loads((run / "trainer_state.json").read_text())["resumes"]
    # the copied run's data lived elsewhere: a moved dataset is an adjustable change too
    assert resume["changed"].pop("dataset")[1] == str(tmp_path / "images")
    assert resume == {"step": 2, "checkpoint": "checkpoint-2",
                      "changed": {"max_steps": [2, 3], "lr": [0.002, 0.001],
                                  "r1_gamma": [10.0, 1.0]}}
    assert json.loads((run / "train_config.json").read_text())["lr"] == 0.001
    saved = Checkpoint.open(run / "checkpoints" / "checkpoint-3").optimizers()
    assert saved["G"]["param_groups"][0]["lr"] == pytest.approx(0.0008)


def test_max_steps_below_the_checkpoint_is_an_error(tmp_path, trained):
    trained(4)
    with pytest.raises(ConfigError, match=r"--max-steps 3 is below the step of .*checkpoint-4"
                                          r", 4"):
        _train(tmp_path, max_steps=3, resume_from_checkpoint="latest")
    trainer = _train(tmp_path, max_steps=4, resume_from_checkpoint="latest")  # a finished run
    assert trainer.state.step == 4


# ---------------------------------------------------------------- crash safety


def test_latest_skips_incomplete_and_unreadable_checkpoints(tmp_path, trained, caplog):
    trained(4)
    ckpts = tmp_path / "run" / "checkpoints"
    newest = ckpts / "checkpoint-4" / "optimizers.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    (ckpts / "checkpoint-99").mkdir()  # empty
    found, skipped = find_resumable(ckpts)
    assert found == ckpts / "checkpoint-2"
    assert [(p.name, r.split(" ")[0]) for p, r in skipped] == [
        ("checkpoint-99", "incomplete"), ("checkpoint-4", "optimizers.safetensors")]
    with caplog.at_level("WARNING"):
        trainer = _train(tmp_path, max_steps=5, resume_from_checkpoint="latest")
    assert trainer.state.step == 5
    text = " ".join(r.message for r in caplog.records)
    assert "skipping" in text and "checkpoint-99" in text and "checkpoint-4" in text
    assert "resuming" in text  # max_steps 4 -> 5, recorded


def test_an_explicit_incomplete_checkpoint_is_an_error(tmp_path, trained):
    trained(2)
    folder = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    (folder / "rng-0.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint-2 is not a usable checkpoint: "
                                              r"rng-0.safetensors is missing"):
        _train(tmp_path, max_steps=3, resume_from_checkpoint=str(folder))


def test_leftovers_of_a_killed_run_are_removed_at_start(tmp_path, trained):
    trained(2)
    run = tmp_path / "run"
    leftovers = [run / "checkpoints" / ".checkpoint-7.tmp", run / ".generator_ema.tmp-1-x",
                 run / ".generator_ema.old-999999"]
    for path in leftovers:
        path.mkdir()
        (path / "junk").write_bytes(b"0" * 100)
    (run / ".trainer_state.json.tmp-5").write_text("{")
    _train(tmp_path, max_steps=3, resume_from_checkpoint="latest")
    assert not [p for p in run.rglob(".*") if p.name != ".lock"]


def _run_training(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                  **popen) -> subprocess.Popen:
    """The recipes' command line in a subprocess, with the settings of ``_config``."""
    cmd = [sys.executable, "-c", "import sys; from pixelfold.training.cli import main; "
           "sys.exit(main(prog='train'))",
           "--output-dir", str(tmp_path / "run"), "--dataset", str(tmp_path / "images"),
           "--resolution", "32", "--preset", "pixelfolder-tiny-32",
           "--d-channels", "32:16,16:32,8:32,4:32", "--batch-size", "4", "--report-to", "none",
           "--no-progress-bar", "--seed", "3", "--d-reg-interval", "2", "--ema-kimg", "0.05",
           "--num-samples", "4", "--sample-every", "2", "--log-every", "1", *args]
    return subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
                                     **(env or {})), **popen)


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path, images):
    """Without an atomic exchange, generator_ema/ is replaced by two renames; a process
    killed between them leaves the old folder aside, and the next start puts it back."""
    proc = _run_training(tmp_path, "--max-steps", "4", "--checkpointing-steps", "2",
                         env={"PIXELFOLD_NO_EXCHANGE": "1",
                              "PIXELFOLD_TEST_DIE_BETWEEN_RENAMES": "1"})
    proc.communicate(timeout=300)
    assert proc.returncode == 9  # died in the middle of the second generator_ema swap
    run = tmp_path / "run"
    assert not (run / "generator_ema").exists()
    olds = list(run.glob(".generator_ema.old-*"))
    assert len(olds) == 1 and (olds[0] / "model.safetensors").is_file()
    kept = _weights(olds[0])
    # checkpoint-4 was complete before generator_ema/ was replaced
    assert validate_checkpoint(run / "checkpoints" / "checkpoint-4") is None
    from pixelfold.utils import cleanup_leftovers

    assert cleanup_leftovers(run / "generator_ema")  # what every start does
    restored = _weights(run / "generator_ema")
    assert all(torch.equal(kept[k], restored[k]) for k in kept)
    trainer = _train(tmp_path, max_steps=5, resume_from_checkpoint="latest")
    assert trainer.state.step == 5 and not list(run.glob(".generator_ema*"))


def _tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_reported_and_leaves_no_partial_checkpoint(tmp_path, images,
                                                                  monkeypatch):
    small = tmp_path / "small"
    mounted = _tmpfs(small, "1m")
    try:
        if not mounted:  # no tmpfs here (not root, no mount): the write fails as ENOSPC does
            import errno

            import pixelfold.training.trainer as trainer_module

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(trainer_module, "save_state", full)
        with pytest.raises(DiskFullError, match=r"no space left on the device while writing "
                                                r".*checkpoint-2.*training stopped at step 2 "
                                                r"\(no checkpoint was written\)"):
            _train(tmp_path, output_dir=str(small / "run"), max_steps=2)
        ckpts = small / "run" / "checkpoints"
        assert not ckpts.exists() or not list(ckpts.iterdir())
    finally:
        if mounted:
            subprocess.run(["umount", str(small)], check=True)


# ---------------------------------------------------------------- Ctrl-C and SIGTERM


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    start = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()[1][-2000:]}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_exits_130(tmp_path, images, sig):
    proc = _run_training(tmp_path, "--max-steps", "100000", "--checkpointing-steps", "100000",
                         "--sample-every", "1", "--num-samples", "1")
    _wait_for(tmp_path / "run" / "samples" / "step-0000001.png", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"train: stopped by {sig.name} at step ")
    step = int(last.split(" at step ")[1].split(":")[0])
    folder = tmp_path / "run" / "checkpoints" / f"checkpoint-{step}"
    assert validate_checkpoint(folder) is None and step >= 1
    assert Generator.from_pretrained(tmp_path / "run" / "generator_ema") is not None
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_second_ctrl_c_quits_at_once(tmp_path, images):
    proc = _run_training(tmp_path, "--max-steps", "100000", "--checkpointing-steps", "100000",
                         "--sample-every", "1", "--num-samples", "1")
    _wait_for(tmp_path / "run" / "samples" / "step-0000001.png", proc)
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stderr:  # signals are merged until the handler ran: wait for it
        seen.append(line)
        if "SIGINT received" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "train: interrupted"
    assert not (tmp_path / "run" / "checkpoints").exists() or not [
        p for p in (tmp_path / "run" / "checkpoints").iterdir() if not p.name.startswith(".")]


# ---------------------------------------------------------------- data


def test_16_bit_and_float_images_are_scaled_to_their_range():
    values = np.array([[0, 32768], [65535, 16384]], dtype=np.uint16)
    for image in (Image.fromarray(values), Image.fromarray(values.astype(np.int32), mode="I")):
        out = preprocess_image(image, 2, resize_filter="nearest")
        want = torch.tensor(values / 65535.0 * 2 - 1, dtype=torch.float32)
        assert out.shape == (3, 2, 2)
        assert torch.allclose(out[0], want, atol=1e-5) and torch.equal(out[0], out[2])
    floats = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    out = preprocess_image(Image.fromarray(floats, mode="F"), 2, resize_filter="nearest")
    assert torch.allclose(out[1], torch.tensor(floats * 2 - 1), atol=1e-6)
    # through a real 16-bit PNG file and a float TIFF
    with pytest.raises(ValueError, match=r"float image values must be in \[0, 1\]; this F "
                                         r"image has values in \[0, 12\]"):
        preprocess_image(Image.fromarray(floats * 12, mode="F"), 2)
    half = preprocess_image(Image.fromarray(np.full((4, 4), 32768, np.uint16)), 4,
                            jpeg_quality=90)
    assert half.abs().max() < 0.02  # mid-gray after JPEG re-encoding, not white


def test_16_bit_png_and_float_tiff_files(tmp_path):
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(values).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        out = preprocess_image(image, 8, resize_filter="nearest")
    assert torch.allclose(out[0], torch.tensor(values / 65535.0 * 2 - 1, dtype=torch.float32),
                          atol=1e-5)
    floats = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(floats, mode="F").save(tmp_path / "b.tiff")
    with Image.open(tmp_path / "b.tiff") as image:
        out = preprocess_image(image, 8, resize_filter="nearest")
    assert torch.allclose(out[0], torch.tensor(floats * 2 - 1), atol=1e-6)


def test_config_rejects_non_finite_numbers_and_unknown_presets():
    with pytest.raises(ConfigError, match="lr must be a finite number, got nan"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match="r1_gamma must be a finite number, got inf"):
        TrainConfig(r1_gamma=float("inf"))
    with pytest.raises(ConfigError, match=r"betas must be two numbers in \[0, 1\)"):
        TrainConfig(betas=(0.0, 1.5))
    with pytest.raises(ConfigError, match="unknown preset 'bogus'; choose one of"):
        TrainConfig(preset="bogus")


def test_an_unwritable_output_dir_is_refused_before_any_work(tmp_path, images, readonly_dir):
    with pytest.raises(ConfigError, match=rf"--output-dir {readonly_dir / 'run'}: cannot write "
                                          rf"in {readonly_dir}$"):
        GANTrainer(_config(tmp_path, output_dir=str(readonly_dir / "run")))


def test_a_batch_that_cannot_fit_is_refused_with_the_estimate(tmp_path, images, monkeypatch):
    from pixelfold.models import DiscriminatorSpec, presets
    from pixelfold.training.trainer import estimate_step_bytes
    from pixelfold.utils import MemoryLimitError

    one = estimate_step_bytes(presets.get("pixelfolder-tiny-32"),
                              DiscriminatorSpec(resolution=32, channels=D_CHANNELS), 1)
    eight = estimate_step_bytes(presets.get("pixelfolder-tiny-32"),
                                DiscriminatorSpec(resolution=32, channels=D_CHANNELS), 8)
    assert 0 < one < eight < 8 * one
    monkeypatch.setenv("PIXELFOLD_MEMORY_LIMIT", str(1 << 20))
    with pytest.raises(MemoryLimitError, match=r"a training step of --batch-size 4 at 32x32 "
                                               r"needs about [\d.]+ MiB but cpu has 1.0 MiB "
                                               r"available; use a smaller --batch-size"):
        GANTrainer(_config(tmp_path))
    assert not (tmp_path / "run").exists()
