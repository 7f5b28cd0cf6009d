"""The ``pixelfold`` command line: one entry point with subcommands.

``pixelfold convert IN.pt OUT_DIR`` turns an authors' checkpoint into a ``save_pretrained``
folder. Bad input prints one line on stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

logger = logging.getLogger("pixelfold")


class CLIError(Exception):
    """An error reported to the user as one line, exit status 2."""


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .convert import load_official

    src = Path(args.input)
    if not src.is_file():
        raise CLIError(f"no checkpoint file at {src}")
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    try:
        G = load_official(src, preset=args.preset, which=args.which,
                          allow_pickle=args.allow_pickle, w_avg_samples=args.w_avg_samples)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    G.save_pretrained(out)
    from .metrics import count_params

    print(f"wrote {G.spec.name} ({count_params(G):,d} parameters) to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixelfold`` command."""
    parser = argparse.ArgumentParser(
        prog="pixelfold",
        description="pixelfold: progressive pixel-regression generators (PixelFolder, CIPS).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("convert", help="convert an authors' PixelFolder checkpoint",
                       description="Convert a checkpoint of the PixelFolder authors' code (.pt) "
                                   "into a pixelfold save_pretrained folder (config.json + "
                                   "model.safetensors).")
    p.add_argument("input", help="the authors' .pt file")
    p.add_argument("output_dir", help="folder to write")
    p.add_argument("--preset", default=None,
                   choices=["pixelfolder-256", "pixelfolder-512", "pixelfolder-1024"],
                   help="model layout (default: inferred from the shapes)")
    p.add_argument("--which", default="g_ema", choices=["g_ema", "g"],
                   help="which generator of the checkpoint to convert (default: g_ema)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also read checkpoints holding pickled objects (trusted files only)")
    p.add_argument("--w-avg-samples", type=int, default=10_000,
                   help="random z used to estimate the average w for truncation")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    p.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"pixelfold {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixelfold {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
