"""save_pretrained / from_pretrained: strictness, clear errors and atomic writes."""

from __future__ import annotations

import json

import pytest
import torch

from pixelfold.models import Generator, presets


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32")
    folder = G.save_pretrained(tmp_path / "model")
    return G, folder


def test_config_is_the_spec(saved):
    G, folder = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "Generator"
    assert config["name"] == "pixelfolder-tiny-32"
    assert config["stages"][0]["block_channels"] == list(G.spec.stages[0].block_channels)


def test_truncated_weights(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors is corrupt or truncated"):
        Generator.from_pretrained(folder)


def test_garbage_weights(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        Generator.from_pretrained(folder)


def test_config_that_does_not_match_the_weights(saved, tmp_path):
    _, folder = saved
    other = Generator.from_preset("pixelfolder-tiny-64").save_pretrained(tmp_path / "other")
    (folder / "config.json").write_text((other / "config.json").read_text())
    with pytest.raises(ValueError, match=r"does not match Generator: missing .* tensor\(s\)"):
        Generator.from_pretrained(folder)


def test_shape_mismatch_names_the_tensor(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["stages"][1]["block_channels"] = [32, 32]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"shape mismatch: synthesis\.stages\.1\.blocks\.1"):
        Generator.from_pretrained(folder)


def test_missing_files_and_bad_json(saved, tmp_path):
    _, folder = saved
    with pytest.raises(FileNotFoundError, match="no such folder"):
        Generator.from_pretrained(tmp_path / "nope")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        Generator.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        Generator.from_pretrained(folder)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not a local folder and could not be fetched"):
        Generator.from_pretrained("someone/pixelfolder-ffhq256")


def test_invalid_spec_in_config(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["stages"][0]["kernel_size"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError,
                       match="config.json: stage 0: StageSpec: kernel_size must be odd"):
        Generator.from_pretrained(folder)


def test_failed_save_leaves_the_old_folder_untouched(saved, monkeypatch):
    G, folder = saved
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        G.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        Generator.from_preset("pixelfolder-tiny-32").save_pretrained(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_save_over_existing_folder_replaces_it(saved):
    G, folder = saved
    (folder / "stale.txt").write_text("old")
    G.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_wrong_class_in_config(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["_class_name"] = "Discriminator"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="describes a Discriminator, not a Generator"):
        Generator.from_pretrained(folder)


def test_every_preset_spec_builds_from_its_config_alone(tmp_path):
    spec = presets.get("cips-tiny-32")
    G = Generator(spec.to_dict())
    assert G.spec == spec
