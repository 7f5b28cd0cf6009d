"""Share generators and training runs on the Hugging Face Hub: model cards and uploads.

[`push_to_hub`][pixelfold.hub.push_to_hub] uploads a generator (a module or a
``save_pretrained`` folder) or a whole training run (its EMA generator, the discriminator of
its newest complete checkpoint, its metrics reports, its newest sample grid, its settings) in
one commit, with a model card written by
[`create_model_card`][pixelfold.hub.create_model_card]: the Hub's YAML metadata
(``library_name: pixelfold``, tags, datasets, license, and a ``model-index`` with the numbers of
the newest metrics report and their protocol), a grid of samples generated for the card, the
code that loads the model, the training settings of a run, and the full protocol of the
numbers. Cards are ``huggingface_hub.ModelCard`` objects; the upload is
``huggingface_hub.upload_folder``.

Files of a repository (``Generator.from_pretrained("user/repo")`` reads the first two)::

    config.json, model.safetensors    the generator (for a run: generator_ema/)
    README.md                         the model card
    samples.png                       the card's sample grid
    discriminator/                    a run's discriminator (config.json + model.safetensors)
    metrics/*.json                    a run's metrics reports (MetricsReport.to_json)
    samples/step-*.png                a run's newest training sample grid
    train_config.json, trainer_state.json   a run's settings and state

Checkpoints (optimizer states) and logs stay local.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models.pretrained import CONFIG_NAME, WEIGHTS_NAME
from .utils import DataError

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

    from .metrics import MetricsReport

__all__ = [
    "BASE_TAGS",
    "LIBRARY_NAME",
    "SAMPLE_GRID",
    "ShareSource",
    "create_model_card",
    "latest_report",
    "push_to_hub",
    "resolve_share_source",
    "stage_upload",
]

LIBRARY_NAME = "pixelfold"
"""``library_name`` of every card."""
BASE_TAGS = ("pixelfold", "gan", "image-generation", "unconditional-image-generation")
"""Tags of every card (the architecture, ``pixelfolder`` or ``cips``, is added)."""
SAMPLE_GRID = "samples.png"
"""The card's sample grid, generated when the card is made."""
PIPELINE_TAG = "unconditional-image-generation"

_RUN_FILES = ("train_config.json", "trainer_state.json")
# MetricsReport attribute -> (metric id in the model-index, pretty name, protocol group)
_METRICS = {
    "fid": ("fid", "FID", "fidelity"),
    "kid": ("kid", "KID", "fidelity"),
    "precision": ("precision", "Precision", "fidelity"),
    "recall": ("recall", "Recall", "fidelity"),
    "inception_score": ("inception_score", "Inception score", "fidelity"),
    "ppl": ("ppl", "PPL", "ppl"),
    "fd_dinov2": ("fd_dinov2", "FD-DINOv2", "fd_dinov2"),
}
_PAPERS = {
    "pixelfolder": ("PixelFolder: An Efficient Progressive Pixel Synthesis Network for Image "
                    "Generation (He et al., ECCV 2022)", "https://arxiv.org/abs/2204.00833"),
    "cips": ("Image Generators with Conditionally-Independent Pixel Synthesis (Anokhin et al., "
             "CVPR 2021)", "https://arxiv.org/abs/2011.13775"),
}


@dataclass
class ShareSource:
    """What is shared: a model folder, a training run or a module.

    Attributes:
        kind: ``"model"`` (a ``save_pretrained`` folder), ``"run"`` (a training run folder)
            or ``"module"`` (a model object).
        model_dir: the folder holding ``config.json`` + ``model.safetensors`` (``None`` for
            a module).
        run_dir: the run folder (``None`` unless ``kind == "run"``).
        module: the model object (``None`` unless ``kind == "module"``).
    """

    kind: str
    model_dir: Path | None = None
    run_dir: Path | None = None
    module: Any = None


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "it is empty"
    return f"it holds {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"


def resolve_share_source(source: Any) -> ShareSource:
    """Classify ``source``: a model module, a ``save_pretrained`` folder (``config.json`` +
    ``model.safetensors``) or a training run folder (``generator_ema/`` and
    ``train_config.json``).

    Raises:
        FileNotFoundError: no such folder.
        DataError: a folder that is neither (the message says what it holds), or a file.
    """
    from torch import nn

    if isinstance(source, nn.Module):
        if not hasattr(source, "save_pretrained"):
            raise DataError(f"a {type(source).__name__} has no save_pretrained: share a "
                            f"pixelfold Generator or Discriminator")
        return ShareSource("module", module=source)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot share a {type(source).__name__}: give a model, a "
                        f"save_pretrained folder or a training run folder")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such folder: {path}")
    if not path.is_dir():
        raise DataError(f"{path} is a file; expected a save_pretrained folder ({CONFIG_NAME} "
                        f"+ {WEIGHTS_NAME}) or a training run folder (generator_ema/ + "
                        f"train_config.json)")
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return ShareSource("model", model_dir=path)
    ema = path / "generator_ema"
    if (path / "train_config.json").is_file() and (ema / CONFIG_NAME).is_file() \
            and (ema / WEIGHTS_NAME).is_file():
        return ShareSource("run", model_dir=ema, run_dir=path)
    if (path / "train_config.json").is_file():
        raise DataError(f"{path} is a training run without a generator yet (no "
                        f"generator_ema/{CONFIG_NAME} and {WEIGHTS_NAME}): train until the "
                        f"first checkpoint, then share it")
    raise DataError(f"{path} is neither a save_pretrained folder ({CONFIG_NAME} + "
                    f"{WEIGHTS_NAME}) nor a training run folder (generator_ema/ + "
                    f"train_config.json): {_listing(path)}")


def latest_report(folder: str | os.PathLike) -> tuple[MetricsReport, Path] | None:
    """The newest metrics report (by modification time) among the ``*.json`` files of
    ``folder`` and of its ``metrics/`` and ``eval/`` subfolders (files that are not reports
    are skipped), with its path; ``None`` when there is none."""
    from .metrics import MetricsReport

    root = Path(folder)
    found: list[tuple[float, Path, MetricsReport]] = []
    for sub in (root, root / "metrics", root / "eval"):
        if not sub.is_dir():
            continue
        for file in sorted(sub.glob("*.json")):
            if file.name in (CONFIG_NAME, *_RUN_FILES):
                continue
            try:
                report = MetricsReport.load(file)
            except (OSError, ValueError):
                continue
            found.append((file.stat().st_mtime, file, report))
    if not found:
        return None
    _, path, report = max(found, key=lambda item: (item[0], str(item[1])))
    return report, path


def _reports(folder: Path) -> list[Path]:
    from .metrics import MetricsReport

    out = []
    for sub in (folder, folder / "metrics", folder / "eval"):
        for file in sorted(sub.glob("*.json")) if sub.is_dir() else []:
            if file.name in (CONFIG_NAME, *_RUN_FILES):
                continue
            try:
                MetricsReport.load(file)
            except (OSError, ValueError):
                continue
            out.append(file)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data


def _hub_dataset(text: Any) -> str | None:
    """``text`` when it reads as a Hub dataset id (``owner/name``, not a local path)."""
    if not isinstance(text, str) or Path(text).exists():
        return None
    return text if re.fullmatch(r"[\w.-]+/[\w.-]+", text) else None


def _family(spec: Any) -> str:
    name = str(getattr(spec, "name", "") or "").lower()
    return "cips" if name.startswith("cips") else "pixelfolder"


def _load_module(share: ShareSource) -> Any:
    if share.module is not None:
        return share.module
    from .models import Generator

    assert share.model_dir is not None
    return Generator.from_pretrained(share.model_dir).eval()


def _as_report(report: Any) -> MetricsReport | None:
    from .metrics import MetricsReport

    if report is None or isinstance(report, MetricsReport):
        return report
    return MetricsReport.load(report)


def _compact_protocol(settings: dict[str, Any]) -> dict[str, Any]:
    """The comparable scalar fields of a protocol group, for the YAML metadata."""
    from .metrics.report import UNCOMPARED_FIELDS

    return {k: v for k, v in settings.items()
            if k not in UNCOMPARED_FIELDS and isinstance(v, (str, int, float, bool))}


def _dataset_of(datasets: Sequence[str] | str | None, run_config: dict[str, Any] | None,
                report: MetricsReport | None) -> tuple[list[str], str | None]:
    """The Hub datasets of the card and a name of the evaluation data."""
    if isinstance(datasets, str):
        datasets = [datasets]
    ids = list(datasets or [])
    if not ids and run_config is not None and _hub_dataset(run_config.get("dataset")):
        ids = [run_config["dataset"]]
    real = None
    if report is not None:
        for group in report.protocol.values():
            real = real or group.get("real_source") or (
                group.get("real_statistics_metadata") or {}).get("real_source")
    if not ids and _hub_dataset(real):
        ids = [str(real)]
    evaluated = ids[0] if ids else (Path(str(real)).name if real else None)
    return ids, evaluated


def _eval_results(report: MetricsReport, dataset: str) -> list[Any]:
    from huggingface_hub import EvalResult

    results = []
    for attr, value in report.metrics().items():
        if attr not in _METRICS:
            continue
        metric_id, pretty, group = _METRICS[attr]
        args = _compact_protocol(report.protocol.get(group, {}))
        results.append(EvalResult(
            task_type=PIPELINE_TAG, task_name="Unconditional Image Generation",
            dataset_type=dataset, dataset_name=dataset, metric_type=metric_id,
            metric_name=pretty, metric_value=float(value), metric_args=args or None))
    return results


def _table(rows: Sequence[tuple[str, Any]], header: tuple[str, str]) -> str:
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def _metrics_section(report: MetricsReport | None, report_name: str | None) -> str:
    if report is None:
        return ("## Evaluation\n\nNo metrics report was shared with this model. Compute one "
                "with `pixelfold eval MODEL --real DATASET --json-out metrics/eval.json` and "
                "push again.")
    from .metrics.report import _ROWS

    rows = []
    for name, (label, spread, fmt) in _ROWS.items():
        value = getattr(report, name)
        if value is None:
            continue
        text = format(value, fmt)
        if spread and getattr(report, spread) is not None:
            text += f" ± {format(getattr(report, spread), fmt)}"
        rows.append((label, text))
    parts = ["## Evaluation", "",
             f"From the metrics report `{report_name}`." if report_name else "",
             "", _table(rows, ("metric", "value"))]
    for group, settings in report.protocol.items():
        parts += ["", f"Protocol ({group}):", "",
                  _table([(k, v) for k, v in settings.items()], ("setting", "value"))]
    parts += ["", "Numbers are comparable only under the same protocol: `pixelfold eval "
                  "--compare A.json B.json` refuses reports whose protocols differ."]
    return "\n".join(p for p in parts if p is not None)


_TRAINING_KEYS = ("dataset", "resolution", "preset", "generator_config", "batch_size",
                  "gradient_accumulation_steps", "max_steps", "kimg", "lr", "betas", "r1_gamma",
                  "d_reg_interval", "g_reg_interval", "pl_weight", "style_mixing_prob",
                  "ema_kimg", "ema_rampup", "hflip", "resize_filter", "jpeg_quality",
                  "mixed_precision", "seed")


def _training_section(config: dict[str, Any], state: dict[str, Any] | None) -> str:
    rows = [(k, config[k]) for k in _TRAINING_KEYS if k in config]
    rows += [(k, v) for k, v in config.items() if k not in _TRAINING_KEYS
             and k not in ("output_dir", "resume_from_checkpoint", "overwrite", "progress_bar",
                           "report_to", "log_every")]
    parts = ["## Training", "", "Settings (`train_config.json`):", "",
             _table(rows, ("setting", "value"))]
    if state:
        done = [(k, state[k]) for k in ("step", "kimg", "epoch", "total_steps") if k in state]
        parts += ["", "State at upload (`trainer_state.json`):", "",
                  _table(done, ("field", "value"))]
    return "\n".join(parts)


def create_model_card(
    source: Any,
    *,
    repo_id: str | None = None,
    report: Any = None,
    datasets: Sequence[str] | str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    model_name: str | None = None,
    sample_grid: str | None = SAMPLE_GRID,
    sample_caption: str | None = None,
    files: Sequence[str] = (),
) -> ModelCard:
    """The model card of a generator or a training run, as a ``huggingface_hub.ModelCard``.

    YAML metadata: ``library_name: pixelfold``, ``pipeline_tag``, ``license``, ``tags``
    ([`BASE_TAGS`][pixelfold.hub.BASE_TAGS], the architecture ``pixelfolder`` or ``cips``, and
    ``tags``), ``datasets`` (the given Hub ids, else a run's Hub dataset, else the report's real
    images when they are a Hub dataset), ``metrics`` and a ``model-index`` holding every number
    of the report with its comparable protocol fields as ``args``. Body: what the model is, the
    sample grid, how to load it, the metrics and their full protocol, a run's training
    settings, the files and the papers.

    Args:
        source: a Generator, a ``save_pretrained`` folder or a training run folder.
        repo_id: the Hub repository (``user/name``) the loading code names (``None``: a
            placeholder).
        report: a [`MetricsReport`][pixelfold.metrics.MetricsReport] or the path of one
            (``None``: the newest report in the folder, see
            [`latest_report`][pixelfold.hub.latest_report]).
        datasets: Hub dataset ids the model was trained on.
        license: the license identifier of the weights.
        tags: more tags.
        model_name: the title and ``model-index`` name (``None``: the repository's name, or
            the model's).
        sample_grid: file name of the sample grid the card shows (``None``: no image).
        sample_caption: the caption under the grid.
        files: the files of the upload, listed in the card.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        DataError: ``source`` is neither a model nor a run folder, or a report or run file
            cannot be read.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .metrics import count_params

    share = resolve_share_source(source)
    run_config = _read_json(share.run_dir / "train_config.json") if share.run_dir else None
    run_state = None
    if share.run_dir is not None and (share.run_dir / "trainer_state.json").is_file():
        run_state = _read_json(share.run_dir / "trainer_state.json")
    report_obj = _as_report(report)
    report_name = None  # the report's name in an upload (stage_upload puts it in metrics/)
    if report is not None:
        report_name = "metrics/" + (Path(str(report)).name if report is not report_obj
                                    else "eval.json")
    else:
        folder = share.run_dir or share.model_dir
        found = latest_report(folder) if folder is not None else None
        if found is not None:
            report_obj, path = found
            report_name = f"metrics/{path.name}"
    module = _load_module(share)
    spec = getattr(module, "spec", None)
    family = _family(spec)
    kind_name = type(module).__name__
    spec_name = str(getattr(spec, "name", "") or kind_name)
    name = model_name or (repo_id.split("/")[-1] if repo_id else spec_name)
    dataset_ids, evaluated = _dataset_of(datasets, run_config, report_obj)
    eval_results = _eval_results(report_obj, evaluated or "unknown") \
        if report_obj is not None else None
    metric_ids = [_METRICS[a][0] for a in report_obj.metrics() if a in _METRICS] \
        if report_obj is not None else None
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, pipeline_tag=PIPELINE_TAG, license=license,
        tags=[*BASE_TAGS, family, *tags], datasets=dataset_ids or None,
        metrics=metric_ids or None, model_name=name if eval_results else None,
        eval_results=eval_results or None)
    repo = repo_id or "<user>/<repo>"
    resolution = getattr(module, "resolution", None)
    size = "x".join(map(str, resolution)) if isinstance(resolution, (tuple, list)) \
        else f"{resolution}x{resolution}"
    paper, url = _PAPERS[family]
    what = (f"A {'CIPS' if family == 'cips' else 'PixelFolder'} generator "
            f"(`{spec_name}`, {size} images, "
            f"{count_params(module):,d} parameters"
            + (f", z_dim {module.z_dim}, w_dim {module.w_dim}" if hasattr(module, "z_dim")
               else "")
            + ") for unconditional image generation, made with "
              "[pixelfold](https://pixelfold.readthedocs.io), a PyTorch library of progressive "
              "pixel-regression generators.")
    if kind_name != "Generator":
        what = (f"A pixelfold `{kind_name}` (`{spec_name}`, {count_params(module):,d} "
                f"parameters), made with [pixelfold](https://pixelfold.readthedocs.io).")
    if share.run_dir is not None:
        trained_on = (run_config or {}).get("dataset")
        what += (f" Trained with pixelfold's trainer on `{trained_on}`; these are the weights "
                 f"of its exponential moving average (`generator_ema`).")
    body = [f"# {name}", "", what, ""]
    if sample_grid and kind_name == "Generator":
        caption = sample_caption or "Samples (seeds 0-15)."
        body += [f"![{caption}]({sample_grid})", "", f"*{caption}*", ""]
    body += ["## Usage", "", "```bash", 'pip install pixelfold', "```", "", "```python",
             "import torch", "", f"from pixelfold.models import {kind_name}", "",
             f'G = {kind_name}.from_pretrained("{repo}").eval()  # cached; revision="..." '
             f"pins a commit"]
    if kind_name == "Generator":
        body += ["z = torch.randn(4, G.z_dim)",
                 'images = G(z, truncation_psi=0.7, noise_mode="const")  # (4, 3, H, W) in '
                 "[-1, 1]", "```", "", "From the command line:", "", "```bash",
                 f"pixelfold generate {repo} --seeds 0-15 --grid --out grid.png",
                 f"pixelfold demo {repo}  # an interactive page (pip install "
                 "\"pixelfold[demo]\")", "```"]
    else:
        body += ["```"]
    if share.run_dir is not None:
        body += ["", "The discriminator of the newest checkpoint is in `discriminator/`:", "",
                 "```python", "from huggingface_hub import snapshot_download", "",
                 "from pixelfold.models import Discriminator", "",
                 f'folder = snapshot_download("{repo}", allow_patterns=["discriminator/*"])',
                 'D = Discriminator.from_pretrained(f"{folder}/discriminator")', "```"]
    body += ["", _metrics_section(report_obj, report_name)]
    if run_config is not None:
        body += ["", _training_section(run_config, run_state)]
    if files:
        body += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    body += ["", "## Papers", "", f"- [{paper}]({url})", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body))


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _stage_discriminator(run_dir: Path, out: Path) -> bool:
    """``out/discriminator/`` from the newest complete checkpoint of a run (loaded and checked
    first); ``False`` when the run has no complete checkpoint."""
    from safetensors.torch import load_file

    from .models import Discriminator, DiscriminatorSpec
    from .models.pretrained import load_state_dict_strict
    from .training.checkpoint import MODEL_FILES, find_resumable

    found, _ = find_resumable(run_dir / "checkpoints")
    if found is None:
        return False
    spec = DiscriminatorSpec.from_dict(_read_json(found / "discriminator_config.json"))
    D = Discriminator(spec)
    weights = found / MODEL_FILES["discriminator"]
    load_state_dict_strict(D, load_file(str(weights)), source=str(weights))
    D.save_pretrained(out / "discriminator")
    return True


def stage_upload(
    source: Any,
    folder: str | os.PathLike,
    *,
    repo_id: str | None = None,
    report: Any = None,
    datasets: Sequence[str] | str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    model_name: str | None = None,
    sample_seeds: Sequence[int] = tuple(range(16)),
    truncation_psi: float = 1.0,
) -> list[str]:
    """Write into ``folder`` (which must be empty or absent) the files
    [`push_to_hub`][pixelfold.hub.push_to_hub] uploads: the model, the sample grid, the model
    card and, for a run, the discriminator, the metrics reports, the newest sample grid and the
    run's settings. Returns the files written, relative to ``folder``, sorted.

    Args:
        source: a Generator (or another pixelfold model), a ``save_pretrained`` folder or a
            training run folder.
        folder: where to write.
        repo_id: the repository the card's loading code names.
        report: the metrics report of the card (see
            [`create_model_card`][pixelfold.hub.create_model_card]); a report given here is
            also uploaded as ``metrics/<name>.json``.
        datasets: Hub dataset ids for the card.
        license: the license of the weights.
        tags: more tags.
        model_name: the card's title.
        sample_seeds: seeds of the sample grid (empty: no grid).
        truncation_psi: truncation of the sample grid.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        DataError: ``source`` is neither a model nor a run folder; ``folder`` is not empty.
        CheckpointError: the model or the discriminator does not load.
    """
    from .metrics import MetricsReport

    share = resolve_share_source(source)
    out = Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} must be an empty folder to stage an upload in")
    out.mkdir(parents=True, exist_ok=True)
    module = _load_module(share)  # loads and checks a folder's weights
    if share.kind == "module":
        with tempfile.TemporaryDirectory() as tmp:
            module.save_pretrained(Path(tmp) / "model")
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                _copy(Path(tmp) / "model" / name, out / name)
    else:
        assert share.model_dir is not None
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            _copy(share.model_dir / name, out / name)
    caption = None
    seeds = list(sample_seeds)
    if seeds and type(module).__name__ == "Generator":
        from .tools import generate_images, image_grid, save_image

        images = generate_images(module, seeds, truncation_psi=truncation_psi,
                                 noise_mode="const")
        save_image(image_grid(images), out / SAMPLE_GRID)
        shown = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
            else ", ".join(map(str, seeds))
        caption = (f"Seeds {shown}, truncation psi {truncation_psi:g}, noise const, generated "
                   f"when this card was written.")
    report_file: str | None = None
    if share.run_dir is not None:
        run = share.run_dir
        for name in _RUN_FILES:
            if (run / name).is_file():
                _copy(run / name, out / name)
        _stage_discriminator(run, out)
        for file in _reports(run):
            _copy(file, out / "metrics" / file.name)
        grids = sorted((run / "samples").glob("step-*.png")) if (run / "samples").is_dir() \
            else []
        if grids:
            _copy(grids[-1], out / "samples" / grids[-1].name)
    elif share.model_dir is not None:
        for file in _reports(share.model_dir):
            _copy(file, out / "metrics" / file.name)
    if report is not None:
        report_obj = _as_report(report)
        assert report_obj is not None
        name = Path(str(report)).name if not isinstance(report, MetricsReport) else "eval.json"
        report_file = f"metrics/{name}"
        (out / "metrics").mkdir(exist_ok=True)
        (out / report_file).write_text(report_obj.to_json() + "\n")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    card = create_model_card(
        share.module if share.kind == "module" else (share.run_dir or share.model_dir),
        repo_id=repo_id, report=report if report is not None else None, datasets=datasets,
        license=license, tags=tags, model_name=model_name,
        sample_grid=SAMPLE_GRID if caption else None, sample_caption=caption,
        files=sorted([*files, "README.md"]))
    card.save(out / "README.md")
    return sorted([*files, "README.md"])


def push_to_hub(
    source: Any,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    report: Any = None,
    datasets: Sequence[str] | str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    model_name: str | None = None,
    sample_seeds: Sequence[int] = tuple(range(16)),
    truncation_psi: float = 1.0,
) -> CommitInfo:
    """Upload a generator or a training run to the Hub repository ``repo_id``, with its model
    card, in one commit.

    The files are staged with [`stage_upload`][pixelfold.hub.stage_upload] in a temporary
    folder, the repository is created when missing (``huggingface_hub.create_repo``,
    ``exist_ok=True``), and the folder is uploaded with ``huggingface_hub.upload_folder``.
    ``Generator.from_pretrained(repo_id)`` loads the result.

    Args:
        source: a Generator, a ``save_pretrained`` folder or a training run folder.
        repo_id: ``user/name`` or ``organization/name``.
        token: a Hub token (``None``: the one ``huggingface-cli login`` saved, or ``HF_TOKEN``).
        private: create the repository private (``None``: the Hub's default); ignored when it
            exists.
        revision: the branch to commit to.
        create_pr: open a pull request instead of committing.
        commit_message: the commit message (``None``: "Upload <name> with pixelfold").
        report: the metrics report for the card (``None``: the newest one in the folder).
        datasets: Hub dataset ids for the card.
        license: the license of the weights.
        tags: more tags.
        model_name: the card's title.
        sample_seeds: seeds of the card's sample grid.
        truncation_psi: truncation of the sample grid.

    Returns:
        The ``huggingface_hub.CommitInfo`` of the commit.

    Raises:
        ValueError: ``repo_id`` is not a valid repository id.
        FileNotFoundError: ``source`` does not exist.
        DataError: ``source`` is neither a model nor a run folder.
    """
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"repo_id {repo_id!r} is not a Hub repository id ({exc})") from None
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id {repo_id!r}: give 'user/name' or 'organization/name'")
    share = resolve_share_source(source)  # bad input fails before any network call
    with tempfile.TemporaryDirectory(prefix="pixelfold-upload-") as tmp:
        stage = Path(tmp) / "upload"
        stage_upload(share.module if share.kind == "module" else source, stage,
                     repo_id=repo_id, report=report, datasets=datasets, license=license,
                     tags=tags, model_name=model_name, sample_seeds=sample_seeds,
                     truncation_psi=truncation_psi)
        huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True,
                                    repo_type="model")
        what = "training run" if share.kind == "run" else "model"
        return huggingface_hub.upload_folder(
            repo_id=repo_id, folder_path=stage, repo_type="model", token=token,
            revision=revision, create_pr=create_pr,
            commit_message=commit_message or f"Upload {what} with pixelfold")
