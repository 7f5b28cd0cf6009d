"""The recipes' command line: parse the flags, train, and report a user error as one line.

``recipes/*.py`` call [`main`][pixelfold.training.cli.main] with their defaults. A bad flag or
setting, a bad dataset, an output folder that holds another run, a checkpoint that cannot be
resumed, a full disk: each prints ``PROG: error: MESSAGE`` naming the value and exits with
status 2; Ctrl-C or SIGTERM writes a checkpoint and exits with 130; ``--debug`` (or
``PIXELFOLD_DEBUG=1``) shows tracebacks. See [`run_main`][pixelfold.utils.errors.run_main].
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..utils.errors import debug_enabled, run_main
from .config import TrainConfig, parse_args

__all__ = ["main"]


def _summary(config: TrainConfig) -> None:
    """What the run left, for the user (main process): where the generator and samples are,
    and the metrics of the last and the best evaluation."""
    import json
    from pathlib import Path

    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    out = Path(config.output_dir)
    try:
        state = json.loads((out / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return
    lines = [f"done: step {state['step']} ({state['kimg']:g} kimg); EMA generator in "
             f"{out / 'generator_ema'}, samples in {out / 'samples'}"]
    log = out / "metrics.jsonl"
    if log.is_file():
        from .evaluation import read_metrics_log

        rows = read_metrics_log(log)
        if rows:
            last = rows[-1]
            values = ", ".join(f"{k} {v:.4g}" for k, v in last["metrics"].items()
                               if not k.endswith("_std"))
            lines.append(f"metrics at step {last['step']}: {values} ({log})")
    best = state.get("best")
    if best:
        lines.append(f"best {best['metric']} {best['value']:.4g} at step {best['step']}: "
                     f"{out / 'generator_ema-best'}")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None, *, defaults: TrainConfig | None = None,
         description: str | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) over ``defaults`` and train; returns the exit
    status (0 done, 2 bad input, 130 interrupted after a checkpoint, 1 a bug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0]) or "train"

    try:  # argparse reports a bad flag or setting itself (one line, status 2) and exits
        config = parse_args(args, defaults, description, prog)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)

    def run() -> int:
        from .trainer import train

        train(config)
        _summary(config)
        return 0

    return run_main(run, prog=prog, debug=debug_enabled(args))
