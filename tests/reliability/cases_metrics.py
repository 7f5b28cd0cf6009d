"""Cases of the metrics: ``pixelfold eval``, weights files, statistics.

The weights files are made here: broadcast zeros with the names and shapes of a network (a
valid-looking state dict of a few bytes per tensor, enough for everything that fails before
the network runs), and pickles whose unpickling would create a marker file. The helpers are
also used by ``tests/test_metrics_inputs.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import Case

MARKER = "code-ran"
"""File that the crafted pickles create when unpickled: it must never exist."""

EVAL = ["pixelfold", "eval", "pixelfolder-tiny-32", "--num-gen", "2", "--num-real", "2",
        "--batch-size", "2"]


class Evil:
    """Unpickling this opens (creates) ``marker``: code from the file would have run."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def network_shapes(network: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of ``"inception"``, ``"vgg16"`` or ``"lpips"``."""
    from pixelfold.metrics import networks

    return {"inception": networks.inception_shapes, "vgg16": networks.vgg16_shapes,
            "lpips": networks.lpips_shapes}[network]()


def network_zeros(network: str) -> dict[str, torch.Tensor]:
    """Every tensor of ``network`` as a broadcast zero (stored as one number each)."""
    return {name: torch.zeros((), dtype=torch.long if name.endswith("num_batches_tracked")
                              else torch.float32).expand(shape)
            for name, shape in network_shapes(network).items()}


def write_zeros(path: Path, network: str, *, nan_in: str | None = None) -> Path:
    """Save [`network_zeros`][tests.reliability.cases_metrics.network_zeros], with tensor
    ``nan_in`` all NaN."""
    state = network_zeros(network)
    if nan_in is not None:
        state[nan_in] = torch.full((), math.nan).expand(state[nan_in].shape)
    torch.save(state, path)
    return path


def write_evil(path: Path, marker: Path, network: str | None = None) -> Path:
    """A pickle that creates ``marker`` when loaded unsafely: ``{"x": Evil}``, or with a
    ``network`` the zeros of that network with one tensor replaced by the payload (for
    ``"dinov2"``: the first tensors of a DINOv2 ViT-L, then the payload)."""
    if network is None:
        state: dict = {"x": Evil(marker)}
    elif network == "dinov2":
        state = {"cls_token": torch.zeros(1, 1, 1024), "mask_token": torch.zeros(1, 1024),
                 "pos_embed": torch.zeros(1, 1370, 1024),
                 "patch_embed.proj.weight": Evil(marker)}
    else:
        state = dict(network_zeros(network))
        state[next(iter(state))] = Evil(marker)
    torch.save(state, path)
    return path


def write_torchscript(path: Path) -> Path:
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    return path


def _no_marker(folder: Path) -> None:
    assert not (folder / MARKER).exists(), "code from the file ran"


def _setup_evil(network: str, name: str = "evil.pth"):
    def setup(folder: Path) -> None:
        write_evil(folder / name, folder / MARKER, network)
        if network == "lpips":
            write_zeros(folder / "vgg16.pth", "vgg16")
    return setup


def _setup_files(**files: str):
    """Files by name: ``"inception"`` / ``"vgg16"`` zeros, ``"text"``, ``"torchscript"``,
    ``"inception-nan"``, ``"stats-nan"``, ``"garbage"``, ``"stats-pickle"``."""
    def setup(folder: Path) -> None:
        for name, kind in files.items():
            path = folder / name
            if kind in ("inception", "vgg16", "lpips"):
                write_zeros(path, kind)
            elif kind == "inception-nan":
                write_zeros(path, "inception", nan_in="fc.weight")
            elif kind == "text":
                path.write_text("these are not weights\n")
            elif kind == "torchscript":
                write_torchscript(path)
            elif kind == "stats-nan":
                mu = np.zeros(2048)
                mu[7] = np.nan
                np.savez(path, mu=mu, sigma=np.eye(2048))
            elif kind == "garbage":
                path.write_bytes(b"\x00\x13 not an archive at all " * 10)
            elif kind == "stats-pickle":
                np.savez(path, mu=np.array([Evil(folder / MARKER)], dtype=object),
                         sigma=np.eye(1))
            elif kind == "text-folder":
                path.mkdir()
                for i in range(3):
                    (path / f"notes{i}.txt").write_text("not an image\n")
            elif kind == "fake-png-folder":
                path.mkdir()
                for i in range(3):
                    (path / f"image{i}.png").write_text("not an image either\n")
            else:
                raise ValueError(kind)
    return setup


def _setup_reports(**reports: dict | str) -> Callable[[Path], None]:
    """Metrics report files by name, each from ``MetricsReport`` keyword arguments (or a
    string: the file's text)."""
    def setup(folder: Path) -> None:
        from pixelfold.metrics import MetricsReport

        for name, fields in reports.items():
            if isinstance(fields, str):
                (folder / name).write_text(fields)
            else:
                (folder / name).write_text(MetricsReport(**fields).to_json())
    return setup


def _setup_generated_statistics(folder: Path) -> None:
    from pixelfold.metrics import FeatureStatistics, save_statistics

    save_statistics(folder / "samples.npz", FeatureStatistics(
        np.zeros(2048), np.eye(2048), num_images=2, feature_extractor="inception-v3-compat/2048",
        metadata={"resolution": 32}))


_PROTOCOL = {"num_generated": 50000, "num_real": 50000, "truncation_psi": 1.0,
             "noise_mode": "random", "real_source": "bitmind/ffhq-256"}
_EVAL_FOLDER = ["--real", "digits", "--metrics", "fid", "--num-gen", "2", "--num-real", "2",
                "--batch-size", "2", "--inception-weights", "inception.pth"]


_NOTHING = "nothing written"
_NO_CODE = "nothing written; the file's code did not run"

CASES = [
    Case(name="eval-inception-weights-run-code", area="metrics",
         what="`--inception-weights` is a pickle that runs code when loaded (inside an "
              "otherwise valid-looking state dict)",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid", "--inception-weights", "evil.pth"],
         status=2, leaves=_NO_CODE, setup=_setup_evil("inception"), check=_no_marker,
         message=r"^pixelfold eval: error: cannot read evil\.pth as the Inception-v3 weights: "
                 r"it holds pickled Python objects besides tensors"),
    Case(name="eval-vgg16-weights-run-code-env", area="metrics",
         what="`PIXELFOLD_VGG16_WEIGHTS` names a pickle that runs code when loaded "
              "(precision/recall)",
         argv=[*EVAL, "--real", "digits", "--metrics", "pr"], env={
             "PIXELFOLD_VGG16_WEIGHTS": "evil.pth"},
         status=2, leaves=_NO_CODE, setup=_setup_evil("vgg16"), check=_no_marker,
         message=r"^pixelfold eval: error: cannot read evil\.pth as the VGG16 weights: it holds "
                 r"pickled Python objects"),
    Case(name="eval-lpips-weights-run-code", area="metrics",
         what="`--lpips-weights` is a pickle that runs code when loaded (PPL)",
         argv=[*EVAL, "--metrics", "ppl", "--ppl-samples", "2", "--lpips-weights", "evil.pth",
               "--vgg16-weights", "vgg16.pth"],
         status=2, leaves=_NO_CODE, setup=_setup_evil("lpips"), check=_no_marker,
         message=r"^pixelfold eval: error: cannot read evil\.pth as the LPIPS linear-layer "
                 r"weights: it holds pickled Python objects"),
    Case(name="eval-dinov2-weights-run-code", area="metrics",
         what="`--dinov2-weights` is a pickle that runs code when loaded (FD-DINOv2)",
         argv=[*EVAL, "--real", "digits", "--metrics", "fd-dinov2", "--dinov2-weights",
               "evil.pth"],
         status=2, leaves=_NO_CODE, setup=_setup_evil("dinov2"), check=_no_marker,
         message=r"^pixelfold eval: error: cannot read evil\.pth as the DINOv2 weights: it "
                 r"holds pickled Python objects"),
    Case(name="eval-weights-text-file", area="metrics",
         what="`--inception-weights` is a text file",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid", "--inception-weights",
               "weights.txt"],
         status=2, leaves=_NOTHING, setup=_setup_files(**{"weights.txt": "text"}),
         message=r"^pixelfold eval: error: cannot read weights\.txt as the Inception-v3 "
                 r"weights: it is a text file"),
    Case(name="eval-weights-torchscript", area="metrics",
         what="`--inception-weights` is a TorchScript archive (a saved program)",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid", "--inception-weights",
               "model.pt"],
         status=2, leaves=_NOTHING, setup=_setup_files(**{"model.pt": "torchscript"}),
         message=r"^pixelfold eval: error: model\.pt is a TorchScript archive \(a saved "
                 r"program\), not a state dict of tensors"),
    Case(name="eval-weights-wrong-network", area="metrics",
         what="`--inception-weights` is the state dict of another network (VGG16)",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid", "--inception-weights",
               "vgg16.pth"],
         status=2, leaves=_NOTHING, setup=_setup_files(**{"vgg16.pth": "vgg16"}),
         message=r"^pixelfold eval: error: vgg16\.pth is not the Inception-v3 weights: it lacks "
                 r"\d+ of the \d+ tensors \(Conv2d_1a_3x3\.conv\.weight, .*\) and has 32 others "
                 r"\(features\.0\.weight, "),
    Case(name="eval-weights-nan", area="metrics",
         what="`--inception-weights` has a tensor full of NaN",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NOTHING, setup=_setup_files(**{"inception.pth": "inception-nan"}),
         message=r"^pixelfold eval: error: the Inception-v3 weights in inception\.pth hold "
                 r"non-finite values \(NaN or infinity\): fc\.weight \(2064384 of 2064384\)"),
    Case(name="eval-statistics-nan", area="metrics",
         what="`--real stats.npz` whose mean holds a NaN",
         argv=[*EVAL, "--real", "stats.npz", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NOTHING,
         setup=_setup_files(**{"stats.npz": "stats-nan", "inception.pth": "inception"}),
         message=r"^pixelfold eval: error: stats\.npz: array 'mu' holds 1 non-finite value "
                 r"\(NaN or infinity\) of 2048"),
    Case(name="eval-statistics-garbage", area="metrics",
         what="`--real stats.npz` is not an `.npz` archive",
         argv=[*EVAL, "--real", "stats.npz", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NOTHING,
         setup=_setup_files(**{"stats.npz": "garbage", "inception.pth": "inception"}),
         message=r"^pixelfold eval: error: stats\.npz is not a statistics file: expected a "
                 r"NumPy \.npz archive with arrays mu and sigma"),
    Case(name="eval-statistics-pickled-objects", area="metrics",
         what="`--real stats.npz` holds a pickled object array that runs code when loaded",
         argv=[*EVAL, "--real", "stats.npz", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NO_CODE, check=_no_marker,
         setup=_setup_files(**{"stats.npz": "stats-pickle", "inception.pth": "inception"}),
         message=r"^pixelfold eval: error: stats\.npz: array 'mu' cannot be read without "
                 r"unpickling Python objects"),
    Case(name="eval-real-not-images", area="metrics",
         what="`--real` is a folder of text files",
         argv=[*EVAL, "--real", "notes", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NOTHING,
         setup=_setup_files(notes="text-folder", **{"inception.pth": "inception"}),
         message=r"^pixelfold eval: error: the real images \S*notes: it holds 3 files, none an "
                 r"image \(notes0\.txt, .*\); expected a folder of images"),
    Case(name="eval-real-undecodable-images", area="metrics",
         what="`--real` is a folder of `.png` files that are not images",
         argv=[*EVAL, "--real", "fake", "--metrics", "fid", "--inception-weights",
               "inception.pth"],
         status=2, leaves=_NOTHING,
         setup=_setup_files(fake="fake-png-folder", **{"inception.pth": "inception"}),
         message=r"^pixelfold eval: error: the real images \S*fake: none of the 3 images of the "
                 r"dataset could be read"),
    Case(name="eval-weights-missing-offline", area="metrics",
         what="offline (`HF_HUB_OFFLINE=1`), no Inception weights given nor in the torch hub "
              "cache",
         argv=[*EVAL, "--real", "digits", "--metrics", "fid"],
         env={"HF_HUB_OFFLINE": "1", "TORCH_HOME": "torch-home", "PIXELFOLD_INCEPTION_WEIGHTS": ""},
         status=2, leaves=_NOTHING,
         message=r"^pixelfold eval: error: Inception-v3 weights .* are needed, but downloads "
                 r"are off .* --inception-weights PATH\) or set the environment variable "
                 r"PIXELFOLD_INCEPTION_WEIGHTS=PATH\.$"),
    Case(name="eval-generated-folder-empty", area="metrics",
         what="`eval samples --real digits` where `samples` (the generated images) is an empty "
              "folder",
         argv=["pixelfold", "eval", "samples", *_EVAL_FOLDER], status=2, leaves=_NOTHING,
         setup=lambda folder: (_setup_files(**{"inception.pth": "inception"})(folder),
                               (folder / "samples").mkdir()),
         message=r"^pixelfold eval: error: the generated images \S*samples: it is empty; "
                 r"expected a folder of images .*, or a model \(a save_pretrained folder with "
                 r"config\.json, a preset name or a Hub id\)$"),
    Case(name="eval-generated-folder-not-images", area="metrics",
         what="`eval notes --real digits` where `notes` holds text files, no images",
         argv=["pixelfold", "eval", "notes", *_EVAL_FOLDER], status=2, leaves=_NOTHING,
         setup=_setup_files(notes="text-folder", **{"inception.pth": "inception"}),
         message=r"^pixelfold eval: error: the generated images \S*notes: it holds 3 files, "
                 r"none an image \(notes0\.txt, .*\); expected a folder of images"),
    Case(name="eval-generated-statistics-kid", area="metrics",
         what="`eval samples.npz --metrics kid`: KID asked of generated statistics",
         argv=["pixelfold", "eval", "samples.npz", "--real", "digits", "--metrics", "kid"],
         status=2, leaves=_NOTHING, setup=_setup_generated_statistics,
         message=r"^pixelfold eval: error: KID and precision/recall need generated images, "
                 r"not precomputed statistics: pass kid=False, prc=False, or the generated "
                 r"images$"),
    Case(name="eval-ppl-of-images", area="metrics",
         what="`eval notes --metrics ppl` where `notes` is a folder (images), not a model",
         argv=["pixelfold", "eval", "notes", "--metrics", "ppl"], status=2, leaves=_NOTHING,
         setup=_setup_files(notes="text-folder"),
         message=r"^pixelfold eval: error: ppl walks a generator's latent space: MODEL notes "
                 r"is a folder of images, not a model$"),
    Case(name="eval-compare-protocols-differ", area="metrics",
         what="`eval --compare a.json b.json` of reports with other noise modes and real image "
              "counts",
         argv=["pixelfold", "eval", "--compare", "a.json", "b.json"], status=2,
         leaves=_NOTHING,
         setup=_setup_reports(**{
             "a.json": {"fid": 10.0, "protocol": {"fidelity": _PROTOCOL}},
             "b.json": {"fid": 8.0, "protocol": {"fidelity": {
                 **_PROTOCOL, "noise_mode": "const", "num_real": 10000}}}}),
         message=r"^pixelfold eval: error: a\.json and b\.json: the protocols differ in "
                 r"fidelity\.noise_mode \('random' vs 'const'\); fidelity\.num_real \(50000 "
                 r"vs 10000\): numbers computed differently are not comparable "
                 r"\(--allow-different FIELD,\.\.\. to compare anyway\)$"),
    Case(name="eval-compare-not-a-report", area="metrics",
         what="`eval --compare a.json b.json` where `b.json` is a config file, not a report",
         argv=["pixelfold", "eval", "--compare", "a.json", "b.json"], status=2,
         leaves=_NOTHING,
         setup=_setup_reports(**{"a.json": {"fid": 10.0, "protocol": {"fidelity": _PROTOCOL}},
                                 "b.json": '{"z_dim": 512, "w_dim": 512}'}),
         message=r"^pixelfold eval: error: b\.json is not a metrics report: expected a JSON "
                 r"object with 'metrics' and 'protocol'"),
]
