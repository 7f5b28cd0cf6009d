"""Cases of training: the recipes' command line, data, run folders, checkpoints, resume.

``train`` is the recipes' command line (``python recipes/quickstart.py ...`` is the same
parser with other defaults). Every case runs the tiny settings of ``TINY`` in its own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from . import Case

TINY = ["--resolution", "32", "--preset", "pixelfolder-tiny-32", "--d-channels",
        "32:16,16:32,8:32,4:32", "--batch-size", "4", "--max-steps", "2",
        "--checkpointing-steps", "2", "--sample-every", "2", "--num-samples", "4",
        "--d-reg-interval", "2", "--report-to", "none", "--no-progress-bar", "--seed", "3"]


def _train(*extra: str, dataset: str = "images", output: str = "run"):
    return ["train", "--dataset", dataset, "--output-dir", output, *TINY, *extra]


def _images(folder: Path, n: int = 8) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(
            folder / "images" / f"{i}.png")


_CACHE: dict[str, Path] = {}


def _trained(folder: Path) -> None:
    """``folder/images`` and ``folder/run``: a finished 2-step run (trained once, copied)."""
    _images(folder)
    if "run" not in _CACHE:
        from pixelfold.training.cli import main

        base = Path(tempfile.mkdtemp(prefix="pixelfold-case-run-"))
        _images(base)
        cwd = os.getcwd()
        try:
            os.chdir(base)
            _reset_accelerate()
            if main(_train()[1:], prog="train") != 0:
                raise RuntimeError("could not train the run the resume cases start from")
        finally:
            _reset_accelerate()
            os.chdir(cwd)
        _CACHE["run"] = base / "run"
    shutil.copytree(_CACHE["run"], folder / "run")


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _run_untouched(folder: Path) -> None:
    run = folder / "run"
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (run / "generator_ema" / "model.safetensors").is_file()


def _nothing_written(folder: Path) -> None:
    run = folder / "run"
    assert not run.exists() or not [p for p in run.iterdir() if p.name != ".lock"], \
        sorted(p.name for p in run.iterdir())


_HOLDERS: dict[Path, subprocess.Popen] = {}


def _locked(folder: Path) -> None:
    """Another process holds ``folder/run``."""
    _images(folder)
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pixelfold.utils import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)",
         str(folder / "run")], stdout=subprocess.PIPE, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert holder.stdout.readline().strip() == "locked"
    _HOLDERS[folder] = holder


def _release(folder: Path) -> None:
    holder = _HOLDERS.pop(folder)
    holder.kill()
    holder.wait()
    assert not (folder / "run" / "checkpoints").exists()


def _corrupt_only(folder: Path) -> None:
    (folder / "images").mkdir()
    (folder / "images" / "a.png").write_text("not an image")
    (folder / "images" / "b.jpg").write_bytes(b"\xff\xd8 truncated")


def _one_image(folder: Path) -> None:
    _images(folder, n=1)


def _incomplete_only(folder: Path) -> None:
    _trained(folder)
    (folder / "run" / "checkpoints" / "checkpoint-2" / "checkpoint.json").unlink()


def _file_untouched(folder: Path) -> None:
    assert (folder / "out.txt").read_text() == "x"


def _no_model(folder: Path) -> None:
    assert not (folder / "run" / "generator_ema").exists()
    assert not (folder / "run" / "checkpoints").exists()


def _write(name: str, text: str):
    def setup(folder: Path) -> None:
        _images(folder)
        (folder / name).write_text(text)
    return setup


CASES = [
    Case(name="train-empty-folder", area="training data", what="`--dataset` is an empty folder",
         setup=lambda f: (f / "images").mkdir(), argv=_train(), status=2,
         message=r"--dataset images holds no files", leaves="nothing written",
         check=_nothing_written),
    Case(name="train-corrupt-only", area="training data",
         what="`--dataset` holds only files that are not images",
         setup=_corrupt_only, argv=_train("--batch-size", "1"), status=2,
         message=r"none of the 2 files of the dataset is a readable image \(the first: .*a.png",
         leaves="nothing written", check=_nothing_written),
    Case(name="train-one-image", area="training data",
         what="one image, fewer than a batch", setup=_one_image, argv=_train(), status=2,
         message=r"has 1 image\(s\), fewer than one batch \(--batch-size 4\)",
         leaves="nothing written", check=_nothing_written),
    Case(name="train-batch-bigger-than-dataset", area="training data",
         what="`--batch-size 4000` for the 1,797 digits",
         argv=_train("--batch-size", "4000", dataset="digits"), status=2,
         message=r"--dataset digits has 1797 image\(s\), fewer than one batch "
                 r"\(--batch-size 4000\)", leaves="nothing written", check=_nothing_written),
    Case(name="train-dataset-is-a-file", area="training data", what="`--dataset` is a file",
         setup=_write("images.txt", "x"), argv=_train(dataset="images.txt"), status=2,
         message=r"--dataset images.txt is a file; give a folder of images",
         leaves="nothing written"),
    Case(name="train-dataset-missing", area="training data",
         what="`--dataset` names a missing folder", argv=_train(dataset="./no/such/folder"),
         status=2, message=r"no such dataset folder: \./no/such/folder", leaves="nothing written"),
    Case(name="train-resolution-mismatch", area="training settings",
         what="`--resolution 64` with a 32x32 preset", setup=_images,
         argv=_train("--resolution", "64"), status=2,
         message=r"the generator makes 32x32 images but --resolution is 64",
         leaves="nothing written"),
    Case(name="train-output-is-a-file", area="run folder", what="`--output-dir` is a file",
         setup=_write("out.txt", "x"), argv=_train(output="out.txt"), status=2,
         message=r"--output-dir out.txt exists and is not a folder", leaves="the file untouched",
         check=_file_untouched),
    Case(name="train-output-under-a-file", area="run folder",
         what="`--output-dir` is a path under a file", setup=_write("out.txt", "x"),
         argv=_train(output="out.txt/run"), status=2,
         message=r"--output-dir out.txt/run: out.txt is a file, not a folder",
         leaves="nothing written"),
    Case(name="train-generator-config-not-json", area="training settings",
         what="`--generator-config` is not JSON", setup=_write("g.json", "{not json"),
         argv=_train("--generator-config", "g.json"), status=2,
         message=r"--generator-config g.json: .*invalid JSON", leaves="nothing written"),
    Case(name="train-generator-config-missing", area="training settings",
         what="`--generator-config` names a missing file", setup=_images,
         argv=_train("--generator-config", "missing.json"), status=2,
         message=r"--generator-config missing.json: no such file", leaves="nothing written"),
    Case(name="train-d-channels-incomplete", area="training settings",
         what="`--d-channels 32:32` (no widths for 16, 8, 4)", setup=_images,
         argv=_train("--d-channels", "32:32"), status=2,
         message=r"--d-channels: .*no entry for resolution\(s\) \[16, 8, 4\]",
         leaves="nothing written"),
    Case(name="train-unknown-preset", area="training settings", what="`--preset bogus`",
         setup=_images, argv=_train("--preset", "bogus"), status=2,
         message=r"unknown preset 'bogus'; choose one of .*pixelfolder-256",
         leaves="nothing written"),
    Case(name="train-lr-nan", area="training settings", what="`--lr nan`", setup=_images,
         argv=_train("--lr", "nan"), status=2, message=r"lr must be a finite number, got nan",
         leaves="nothing written"),
    Case(name="train-lr-explodes", area="training settings",
         what="`--lr 1e38`: the losses become NaN", setup=_images,
         argv=_train("--lr", "1e38"), status=2,
         message=r"is nan at step \d+: training stopped \(no checkpoint was written\); try a "
                 r"lower --lr", leaves="no checkpoint, no `generator_ema/`",
         check=_no_model),
    Case(name="train-over-existing-run", area="run folder",
         what="a new run into a folder that holds a finished run", setup=_trained,
         argv=_train(), status=2,
         message=r"already holds a run at step 2 .*pass --resume-from-checkpoint latest to "
                 r"continue it, --overwrite to replace it", leaves="the old run untouched",
         check=_run_untouched),
    Case(name="train-folder-locked", area="run folder",
         what="a second process trains into a folder in use", setup=_locked, argv=_train(),
         status=2, message=r"run is in use by process \S+ on .*: wait for it to end, or use "
                           r"another --output-dir", leaves="nothing written", check=_release),
    Case(name="train-resume-changed-batch", area="resume",
         what="resume with another `--batch-size` and `--preset`", setup=_trained,
         argv=_train("--resume-from-checkpoint", "latest", "--batch-size", "2", "--preset",
                     "cips-tiny-32", "--max-steps", "3"), status=2,
         message=r"cannot resume .*checkpoint-2 with changed fixed settings: batch_size 4 -> 2"
                 r"; generator 'pixelfolder-tiny-32' -> 'cips-tiny-32'",
         leaves="the run untouched", check=_run_untouched),
    Case(name="train-resume-max-steps-below", area="resume",
         what="resume with `--max-steps` below the checkpoint's step", setup=_trained,
         argv=_train("--resume-from-checkpoint", "latest", "--max-steps", "1"), status=2,
         message=r"--max-steps 1 is below the step of .*checkpoint-2, 2", leaves="the run "
         "untouched", check=_run_untouched),
    Case(name="train-resume-only-incomplete", area="resume",
         what="`--resume-from-checkpoint latest` when every checkpoint is incomplete",
         setup=_incomplete_only, argv=_train("--resume-from-checkpoint", "latest"), status=2,
         message=r"holds a run at step 2 .* but no complete checkpoint to resume "
                 r"\(checkpoint-2: incomplete .*\); pass --overwrite", leaves="the run untouched"),
    Case(name="train-resume-missing-folder", area="resume",
         what="`--resume-from-checkpoint` names a missing folder", setup=_images,
         argv=_train("--resume-from-checkpoint", "nowhere"), status=2,
         message=r"--resume-from-checkpoint nowhere: no such checkpoint folder",
         leaves="nothing written", check=_nothing_written),
]


def _no_inception(folder: Path) -> None:
    _images(folder)
    (folder / "torch-home").mkdir()


CASES += [
    Case(name="train-augment-unknown", area="training settings", what="`--augment adaptive`",
         setup=_images, argv=_train("--augment", "adaptive"), status=2,
         message=r"argument --augment: invalid choice: 'adaptive'", leaves="nothing written"),
    Case(name="train-ada-target-out-of-range", area="training settings",
         what="`--augment ada --ada-target 1.5`", setup=_images,
         argv=_train("--augment", "ada", "--ada-target", "1.5"), status=2,
         message=r"ada target must be in \(0, 1\), got 1.5", leaves="nothing written"),
    Case(name="train-augment-p-for-diffaugment", area="training settings",
         what="`--augment diffaugment --augment-p 0.5`", setup=_images,
         argv=_train("--augment", "diffaugment", "--augment-p", "0.5"), status=2,
         message=r"augment p=0.5 applies to kind 'ada' only", leaves="nothing written"),
    Case(name="train-metrics-unknown", area="training settings", what="`--metrics fid,fad`",
         setup=_images, argv=_train("--metrics", "fid,fad"), status=2,
         message=r"--metrics fid,fad: unknown metric\(s\) fad; choose from fid, kid",
         leaves="nothing written"),
    Case(name="train-metrics-without-weights", area="training settings",
         what="`--metrics fid` offline, with no Inception weights anywhere",
         setup=_no_inception, argv=_train("--metrics", "fid"), status=2,
         message=r"Inception-v3 weights .* are needed, but downloads are off .*"
                 r"--inception-weights PATH\) or set the environment variable "
                 r"PIXELFOLD_INCEPTION_WEIGHTS", leaves="nothing written: it fails before "
         "training", check=_nothing_written,
         env={"TORCH_HOME": "torch-home", "HF_HUB_OFFLINE": "1",
              "PIXELFOLD_INCEPTION_WEIGHTS": ""}),
    Case(name="train-best-metric-not-computed", area="training settings",
         what="`--metrics fid --best-metric recall`", setup=_images,
         argv=_train("--metrics", "fid", "--best-metric", "recall"), status=2,
         message=r"--best-metric 'recall' is not computed by --metrics fid",
         leaves="nothing written"),
]
