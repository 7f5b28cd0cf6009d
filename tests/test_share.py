"""Sharing on the Hugging Face Hub (issue 14), offline: the model card's metadata and body, the
files staged for upload, ``push_to_hub``'s calls of ``huggingface_hub`` (replaced here: no
test touches the network), and loading what was staged from a folder laid out as the Hub's
cache lays a downloaded repository out."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from pixelfold import hub
from pixelfold.metrics import MetricsReport
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator
from pixelfold.training import TrainConfig
from pixelfold.training.checkpoint import MODEL_FILES, OPTIMIZERS_FILE, write_manifest
from pixelfold.training.trainer import save_image_grid
from pixelfold.utils import DataError, save_state

D_CHANNELS = {32: 16, 16: 32, 8: 32, 4: 32}
PROTOCOL = {"generator": "pixelfolder-tiny-32", "resolution": 32, "num_generated": 50000,
            "seed": 0, "truncation_psi": 1.0, "noise_mode": "random",
            "real_source": "bitmind/ffhq-256", "num_real": 50000,
            "inception_input": "uint8 images resized to 299x299 by torch-fidelity (bilinear)",
            "inception_weights": "/weights/inception.pth", "inception_weights_sha256": "ab" * 32,
            "kid": "100 subsets of 1000 images", "device": "cuda", "seconds": 812.5,
            "torch": "2.14.1", "torch_fidelity": "0.4.0", "pixelfold": "0.1.0"}


def _tiny(seed: int = 0, preset: str = "pixelfolder-tiny-32") -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator.from_preset(preset).eval()


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _write_run(folder, reports=True):
    """A training run folder as GANTrainer writes it after 2 steps (generator_ema/, a complete
    checkpoint, a sample grid, train_config.json, trainer_state.json), made directly: a real
    run takes a minute on a busy CPU."""
    G, G_ema = _tiny(1), _tiny(2)
    dspec = DiscriminatorSpec(resolution=32, channels=D_CHANNELS)
    D = Discriminator(dspec)
    config = TrainConfig(output_dir=str(folder), dataset="digits", resolution=32,
                         preset="pixelfolder-tiny-32", d_channels=D_CHANNELS, batch_size=4,
                         max_steps=2, report_to="none")
    G_ema.save_pretrained(folder / "generator_ema")
    (folder / "train_config.json").write_text(config.to_json() + "\n")
    (folder / "trainer_state.json").write_text(json.dumps({"step": 2, "kimg": 0.008,
                                                           "total_steps": 2}) + "\n")
    save_image_grid(G_ema(torch.randn(4, G_ema.z_dim), noise_mode="const"),
                    folder / "samples" / "step-0000002.png")
    ckpt = folder / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    for name, module in (("generator", G), ("generator_ema", G_ema), ("discriminator", D)):
        save_file(_tensors(module), str(ckpt / MODEL_FILES[name]), metadata={"format": "pt"})
    save_state(ckpt / OPTIMIZERS_FILE, {"G": {}, "D": {}, "scaler": None})
    for name, data in (("train_config.json", config.to_dict()),
                       ("generator_config.json", G.spec.to_dict()),
                       ("discriminator_config.json", dspec.to_dict())):
        (ckpt / name).write_text(json.dumps(data, indent=2) + "\n")
    write_manifest(ckpt, step=2, trainer_state={"step": 2}, num_processes=1)
    if reports:
        (folder / "metrics").mkdir()
        old = folder / "metrics" / "old.json"
        old.write_text(MetricsReport(fid=99.0, protocol={"fidelity": PROTOCOL}).to_json())
        os.utime(old, (1_000_000_000, 1_000_000_000))
        (folder / "metrics" / "fid50k.json").write_text(MetricsReport(
            fid=12.5, kid=0.0104, kid_std=0.0007, precision=0.61, recall=0.42,
            protocol={"fidelity": PROTOCOL}).to_json())
        (folder / "metrics" / "notes.json").write_text('{"not": "a report"}')
    return folder, D


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("share") / "run")


def _front_matter(card) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# ---- model cards -------------------------------------------------------------------------------


def test_card_of_a_run_has_the_hub_metadata_and_the_latest_report(run_folder):
    run, _ = run_folder
    card = hub.create_model_card(run, repo_id="me/tiny-run")
    meta = _front_matter(card)
    assert meta["library_name"] == "pixelfold"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert meta["license"] == "apache-2.0"
    assert meta["tags"] == ["pixelfold", "gan", "image-generation",
                            "unconditional-image-generation", "pixelfolder"]
    # the run's dataset (digits) is not on the Hub; the report's real images are
    assert meta["datasets"] == ["bitmind/ffhq-256"]
    assert meta["metrics"] == ["fid", "kid", "precision", "recall"]
    (index,) = meta["model-index"]
    assert index["name"] == "tiny-run"
    (result,) = index["results"]
    assert result["task"]["type"] == "unconditional-image-generation"
    assert result["dataset"] == {"type": "bitmind/ffhq-256", "name": "bitmind/ffhq-256"}
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"fid": 12.5, "kid": 0.0104, "precision": 0.61, "recall": 0.42}  # not 99
    args = result["metrics"][0]["args"]
    assert args["num_generated"] == 50000 and args["truncation_psi"] == 1.0
    assert args["inception_weights_sha256"] == "ab" * 32 and "299x299" in args["inception_input"]
    assert args["torch"] == "2.14.1" and args["pixelfold"] == "0.1.0"
    for local in ("device", "seconds", "inception_weights", "generator"):
        assert local not in args
    body = card.content
    assert 'Generator.from_pretrained("me/tiny-run")' in body
    assert "pixelfold generate me/tiny-run --seeds 0-15" in body
    assert "From the metrics report `metrics/fid50k.json`." in body
    assert "| KID | 0.010400 ± 0.000700 |" in body
    assert "| inception_weights_sha256 |" in body and "--compare" in body
    assert "## Training" in body and "| batch_size | 4 |" in body and "| step | 2 |" in body
    assert 'Discriminator.from_pretrained(f"{folder}/discriminator")' in body
    assert "arxiv.org/abs/2204.00833" in body


def test_card_of_a_bare_generator_folder(tmp_path):
    folder = tmp_path / "generator_ema"
    _tiny(preset="cips-tiny-32").save_pretrained(folder)
    card = hub.create_model_card(folder, datasets="me/faces", license="mit", tags=["faces"])
    meta = _front_matter(card)
    assert meta["tags"][-2:] == ["cips", "faces"] and meta["datasets"] == ["me/faces"]
    assert meta["license"] == "mit"
    assert "model-index" not in meta and "metrics" not in meta
    body = card.content
    assert "A CIPS generator (`cips-tiny-32`, 32x32 images" in body
    assert 'Generator.from_pretrained("<user>/<repo>")' in body
    assert "No metrics report was shared" in body and "## Training" not in body
    assert "discriminator" not in body and "arxiv.org/abs/2011.13775" in body
    # a report given explicitly, and one found beside the weights
    report = MetricsReport(fid=7.25, protocol={"fidelity": PROTOCOL})
    given = hub.create_model_card(folder, report=report, repo_id="me/cips")
    assert _front_matter(given)["model-index"][0]["results"][0]["metrics"][0]["value"] == 7.25
    (folder / "eval.json").write_text(report.to_json())
    found = hub.create_model_card(folder)
    assert "From the metrics report `metrics/eval.json`." in found.content


# ---- the files of an upload --------------------------------------------------------------------


def _lay_out_as_hub_cache(staged, cache, repo_id, commit):
    """The layout ``huggingface_hub.snapshot_download`` leaves: blobs named by their hash,
    snapshots/<commit>/ of relative symlinks to them, refs/main holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for file in staged.rglob("*"):
        if file.is_file():
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            shutil.copy(file, blob)
            link = snapshot / file.relative_to(staged)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def test_a_staged_run_holds_everything_and_loads_from_the_hub_cache(run_folder, tmp_path,
                                                                    monkeypatch):
    import huggingface_hub.constants

    run, D = run_folder
    staged = tmp_path / "upload"
    files = hub.stage_upload(run, staged, repo_id="me/tiny-run", sample_seeds=range(9))
    assert files == ["README.md", "config.json", "discriminator/config.json",
                     "discriminator/model.safetensors", "metrics/fid50k.json",
                     "metrics/old.json", "model.safetensors", "samples.png",
                     "samples/step-0000002.png", "train_config.json", "trainer_state.json"]
    for name in ("config.json", "model.safetensors"):  # the EMA generator, byte for byte
        assert (staged / name).read_bytes() == (run / "generator_ema" / name).read_bytes()
    assert Image.open(staged / "samples.png").size == (96, 96)  # 3x3 grid of 32x32
    readme = (staged / "README.md").read_text()
    assert "![Seeds 0-8, truncation psi 1, noise const" in readme and "- `samples.png`" in readme
    assert MetricsReport.load(staged / "metrics" / "fid50k.json").fid == 12.5
    with pytest.raises(DataError, match="must be an empty folder"):
        hub.stage_upload(run, staged)
    # from the Hub cache, offline, at main and at the commit
    cache = tmp_path / "hub-cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _lay_out_as_hub_cache(staged, cache, "me/tiny-run", commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    expected = Generator.from_pretrained(run / "generator_ema")
    for revision in (None, commit):
        G = Generator.from_pretrained("me/tiny-run", revision=revision)
        for key, value in expected.state_dict().items():
            assert torch.equal(G.state_dict()[key], value), key
    loaded_D = Discriminator.from_pretrained(snapshot / "discriminator")
    for key, value in D.state_dict().items():
        assert torch.equal(loaded_D.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="could not be fetched from the Hugging Face Hub"):
        Generator.from_pretrained("me/tiny-run", revision="f" * 40)


def test_staging_a_module_and_a_given_report(tmp_path):
    G = _tiny()
    report = MetricsReport(fid=3.5, protocol={"fidelity": PROTOCOL})
    files = hub.stage_upload(G, tmp_path / "up", report=report, sample_seeds=())
    assert files == ["README.md", "config.json", "metrics/eval.json", "model.safetensors"]
    back = Generator.from_pretrained(tmp_path / "up")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in G.state_dict().items())
    readme = (tmp_path / "up" / "README.md").read_text()
    assert "![" not in readme and "From the metrics report `metrics/eval.json`." in readme


# ---- push_to_hub -------------------------------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    """``create_repo`` and ``upload_folder`` replaced: the calls and the files of the folder
    at upload time are recorded."""
    import huggingface_hub

    calls: dict = {"create_repo": [], "upload_folder": []}

    def create_repo(repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, **kwargs})

    def upload_folder(**kwargs):
        folder = kwargs["folder_path"]
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file())
        calls["upload_folder"].append({**kwargs, "files": files})
        return "commit-info"

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def test_push_to_hub_uploads_the_staged_folder(run_folder, fake_hub):
    run, _ = run_folder
    info = hub.push_to_hub(run, "me/tiny-run", token="hf_x", private=True, revision="v1",
                           sample_seeds=range(4))
    assert info == "commit-info"
    assert fake_hub["create_repo"] == [{"repo_id": "me/tiny-run", "token": "hf_x",
                                        "private": True, "exist_ok": True,
                                        "repo_type": "model"}]
    (call,) = fake_hub["upload_folder"]
    assert call["repo_id"] == "me/tiny-run" and call["repo_type"] == "model"
    assert call["token"] == "hf_x" and call["revision"] == "v1" and call["create_pr"] is False
    assert call["commit_message"] == "Upload training run with pixelfold"
    assert "discriminator/model.safetensors" in call["files"] and "README.md" in call["files"]
    assert not call["folder_path"].exists()  # the staging folder is gone afterwards


def test_generator_push_to_hub_delegates(fake_hub):
    G = _tiny()
    assert G.push_to_hub("me/tiny", create_pr=True, commit_message="first",
                         sample_seeds=range(4)) == "commit-info"
    (call,) = fake_hub["upload_folder"]
    assert call["create_pr"] is True and call["commit_message"] == "first"
    assert call["files"] == ["README.md", "config.json", "model.safetensors", "samples.png"]


def test_push_to_hub_refuses_what_is_not_a_model_before_any_call(tmp_path, fake_hub):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty is neither a save_pretrained folder \(config"
                                        r"\.json \+ model\.safetensors\) nor a training run "
                                        r"folder \(generator_ema/ \+ train_config\.json\): it "
                                        r"is empty$"):
        hub.push_to_hub(empty, "me/x")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"it holds a\.png$"):
        hub.push_to_hub(tmp_path / "images", "me/x")
    started = tmp_path / "started"
    started.mkdir()
    (started / "train_config.json").write_text("{}")
    with pytest.raises(DataError, match="a training run without a generator yet"):
        hub.push_to_hub(started, "me/x")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        hub.push_to_hub(tmp_path / "missing", "me/x")
    with pytest.raises(DataError, match="is a file"):
        hub.push_to_hub(tmp_path / "images" / "a.png", "me/x")
    with pytest.raises(ValueError, match="'not a repo' is not a Hub repository id"):
        hub.push_to_hub(empty, "not a repo")
    with pytest.raises(ValueError, match="give 'user/name'"):
        hub.push_to_hub(empty, "just-a-name")
    assert fake_hub == {"create_repo": [], "upload_folder": []}
