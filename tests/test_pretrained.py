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


# ---------------------------------------------------------------- non-finite, sizes, modes


def _set_tensor(folder, name, value):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    save_file(state, str(folder / "model.safetensors"))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_tensor_and_file(saved, value):
    from pixelfold.utils import NonFiniteError

    _, folder = saved
    _set_tensor(folder, "mapping.layers.1.weight", value)
    with pytest.raises(NonFiniteError, match=rf"^the weights in {folder / 'model.safetensors'} "
                                             rf"hold non-finite values \(NaN or infinity\): "
                                             rf"mapping\.layers\.1\.weight \(1 of 4096\)$"):
        Generator.from_pretrained(folder)


def test_non_finite_buffer_is_refused(saved):
    from pixelfold.utils import NonFiniteError

    _, folder = saved
    _set_tensor(folder, "mapping.w_avg", float("nan"))
    with pytest.raises(NonFiniteError, match=r"mapping\.w_avg \(1 of 64\)"):
        Generator.from_pretrained(folder)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("mapping_lr_mul", float("nan"), "GeneratorSpec: mapping_lr_mul must be finite, got nan"),
    ("image_channels", 2, "GeneratorSpec: image_channels must be 1 \\(grayscale\\), 3"),
])
def test_bad_config_fields_name_the_file(saved, field, value, message):
    from pixelfold.utils import ConfigError

    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))  # NaN is written as NaN
    with pytest.raises(ConfigError, match=rf"{folder / 'config.json'}: {message}"):
        Generator.from_pretrained(folder)


def test_a_config_too_large_for_the_memory_is_refused_before_reading_weights(saved):
    from pixelfold.utils import MemoryLimitError

    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["stages"][1]["block_channels"] = [2**20, 2**20]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"never read")
    with pytest.raises(MemoryLimitError, match=rf"^{folder / 'config.json'}: the generator "
                                               rf"'pixelfolder-tiny-32' .* needs about .*TiB"):
        Generator.from_pretrained(folder)


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                              (0o027, 0o640, 0o750)])
def test_saved_folder_gets_the_umask_modes(tmp_path, umask, file_mode, dir_mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        folder = Generator.from_preset("pixelfolder-tiny-32").save_pretrained(tmp_path / "m")
        # and again over an existing folder (the swap path)
        Generator.from_preset("pixelfolder-tiny-32").save_pretrained(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == file_mode, name
