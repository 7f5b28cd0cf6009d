"""The trainer-step benchmark runs as its page says (``--quick``: a tiny model, the trainer
side only) and reports the amortized step it defines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_trainer_step_benchmark_quick_run(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/trainer_step.py", "--quick",
                           "--threads", "1", "--json-out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| trainer" in proc.stdout
    result = json.loads(out.read_text())
    (row,) = result["training"]
    assert row["side"] == "trainer"
    plain, r1 = row["plain"]["median_ms"], row["r1"]["median_ms"]
    assert 0 < plain and 0 < r1
    # one round: the amortized step is exactly (15 plain + 1 R1) / 16
    assert abs(row["amortized"]["median_ms"] - (15 * plain + r1) / 16) < 1e-6 * plain
