"""One spec mechanism (issue 11, item 3): every spec and the training config share SpecMixin's
dict/JSON forms, one set of value checks, and the recipe command line is generated from
TrainConfig's fields."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from pixelfold.models import GeneratorSpec, StageSpec, presets
from pixelfold.models.discriminator import DiscriminatorSpec
from pixelfold.training import TrainConfig, build_arg_parser, parse_args
from pixelfold.utils import ConfigError
from pixelfold.utils.spec import (
    SpecMixin,
    check_choice,
    check_int,
    check_int_tuple,
    check_number,
    field_docs,
)

SPECS = {
    "GeneratorSpec": lambda: presets.get("pixelfolder-tiny-32"),
    "StageSpec": lambda: presets.get("pixelfolder-tiny-32").stages[0],
    "DiscriminatorSpec": lambda: DiscriminatorSpec(resolution=32, channels={32: 8, 16: 8, 8: 8,
                                                                            4: 8}),
    "TrainConfig": lambda: TrainConfig(preset="pixelfolder-tiny-32", resolution=32,
                                       d_channels={32: 8, 16: 8, 8: 8, 4: 8}, betas=(0.1, 0.9)),
}


@pytest.fixture(params=sorted(SPECS))
def spec(request):
    return SPECS[request.param]()


def test_every_spec_uses_the_mixin(spec):
    assert isinstance(spec, SpecMixin)
    for name in ("to_dict", "from_dict", "to_json", "from_json", "to_json_file"):
        assert name not in vars(type(spec)), f"{type(spec).__name__} defines its own {name}"


def test_dict_and_json_round_trip(spec, tmp_path):
    cls = type(spec)
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    assert cls.from_dict(json.loads(json.dumps(data))) == spec
    assert cls.from_json(spec.to_json()) == spec
    path = tmp_path / "spec.json"
    spec.to_json_file(path)
    assert cls.from_json(path) == spec  # a Path
    assert cls.from_json(str(path)) == spec  # a string naming a .json file
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_metadata_keys_are_skipped_and_never_written(spec):
    cls = type(spec)
    data = {"_class_name": "X", "_pixelfold_version": "0", **spec.to_dict()}
    assert cls.from_dict(data) == spec
    assert not any(k.startswith("_") for k in spec.to_dict())


def test_unknown_and_missing_keys_are_named(spec):
    cls = type(spec)
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: unknown field\(s\) \['colour', 'z'\]"):
        cls.from_dict({**spec.to_dict(), "z": 1, "colour": 2})
    with pytest.raises(ConfigError, match=rf"{cls.__name__}.from_dict expects a dict, got list"):
        cls.from_dict([1, 2])
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        data = spec.to_dict()
        del data[required[0]]
        with pytest.raises(ConfigError, match=rf"{cls.__name__}: missing field\(s\) "
                                              rf"\['{required[0]}'\]"):
            cls.from_dict(data)


def test_from_json_errors_name_the_file(spec, tmp_path):
    cls = type(spec)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^{bad}: invalid JSON"):
        cls.from_json(bad)
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}.from_json: invalid JSON"):
        cls.from_json("{not json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**spec.to_dict(), "colour": 1}))
    with pytest.raises(ConfigError, match=rf"^{unknown}: {cls.__name__}: unknown field"):
        cls.from_json(unknown)
    folder = tmp_path / "x.json"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"{folder} is a folder, not a {cls.__name__}"):
        cls.from_json(folder)
    with pytest.raises(FileNotFoundError):
        cls.from_json(tmp_path / "missing.json")


def test_optional_fields_left_out_while_default():
    stage = presets.get("pixelfolder-tiny-32").stages[0]
    assert "mid_channels" not in stage.to_dict()
    wider = dataclasses.replace(stage, mid_channels=(8,) * len(stage.block_channels))
    assert wider.to_dict()["mid_channels"] == [8] * len(stage.block_channels)
    assert StageSpec.from_dict(wider.to_dict()) == wider


def test_field_json_forms_kept():
    """The forms configs on disk already use: D's table as pairs, TrainConfig's as a dict."""
    d = SPECS["DiscriminatorSpec"]()
    assert d.to_dict()["channels"] == [[4, 8], [8, 8], [16, 8], [32, 8]]
    c = SPECS["TrainConfig"]()
    assert c.to_dict()["d_channels"] == {"32": 8, "16": 8, "8": 8, "4": 8}
    assert c.to_dict()["betas"] == [0.1, 0.9]
    g = presets.get("pixelfolder-tiny-32")
    assert isinstance(g.to_dict()["stages"][0], dict)
    assert GeneratorSpec.from_dict(g.to_dict()).stages == g.stages


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int(0, "z_dim", where="GeneratorSpec"),
         "GeneratorSpec: z_dim must be a positive integer, got 0"),
        (lambda: check_int(True, "n"), "n must be a positive integer, got True"),
        (lambda: check_int(-1, "n", low=0), "n must be a non-negative integer, got -1"),
        (lambda: check_int(101, "q", high=100, optional=True),
         "q must be an integer in 1..100 or None, got 101"),
        (lambda: check_number(float("nan"), "lr"), "lr must be a finite number, got nan"),
        (lambda: check_number(0.0, "lr", low=0, low_open=True),
         "lr must be a finite positive number, got 0.0"),
        (lambda: check_number("x", "gamma", words=("auto",)),
         "gamma must be a finite number or 'auto', got 'x'"),
        (lambda: check_number(1.0, "beta", low=0, high=1, high_open=True),
         r"beta must be a finite number in \[0, 1\), got 1.0"),
        (lambda: check_choice("x", "grow", ("unfold", "none"), where="StageSpec"),
         "StageSpec: grow must be one of unfold, none, got 'x'"),
        (lambda: check_int_tuple((), "blur_kernel"),
         r"blur_kernel must be a non-empty sequence of positive integers, got \(\)"),
        (lambda: check_int_tuple((1, 0), "k"), r"k must hold positive integers, got \(1, 0\)"),
    ],
)
def test_checks_name_field_rule_and_value(call, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        call()


def test_checks_return_good_values():
    assert check_int(3, "n") == 3 and check_int(None, "n", optional=True) is None
    assert check_number("auto", "g", words=("auto",)) == "auto"
    assert check_number(0.5, "p", low=0, high=1) == 0.5
    assert check_int_tuple(4, "k") == (4,) and check_int_tuple([1, 2], "k") == (1, 2)


def test_every_train_config_field_is_a_flag_with_its_docstring():
    parser = build_arg_parser()
    actions = {a.dest: a for a in parser._actions}
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert f.name in actions, f"TrainConfig.{f.name} has no flag"
        assert f.name in docs, f"TrainConfig.{f.name} is not described in the docstring"
        assert actions[f.name].help.startswith(docs[f.name][:20].replace("%", "%%"))
        assert actions[f.name].option_strings[0] == "--" + f.name.replace("_", "-")
    assert "debug" in actions
    assert "[" not in docs["metrics"] and "``" not in docs["r1_gamma"]  # plain text for --help


def test_generated_flags_parse_every_type():
    cfg = parse_args(["--preset", "pixelfolder-tiny-32", "--resolution", "32",
                      "--d-channels", "32:8,16:8,8:8,4:8", "--betas", "0.1,0.9",
                      "--r1-gamma", "auto", "--ema-rampup", "0.05", "--jpeg-quality", "none",
                      "--no-hflip", "--overwrite", "--augment", "ada", "--kimg", "1.5",
                      "--checkpoints-total-limit", "none"])
    assert cfg.d_channels == {32: 8, 16: 8, 8: 8, 4: 8} and cfg.betas == (0.1, 0.9)
    assert cfg.r1_gamma == "auto" and cfg.ema_rampup == 0.05 and cfg.jpeg_quality is None
    assert not cfg.hflip and cfg.overwrite and cfg.augment == "ada" and cfg.kimg == 1.5
    assert cfg.checkpoints_total_limit is None
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_choice_lists_come_from_their_modules():
    from pixelfold.training.augment import AUGMENT_KINDS
    from pixelfold.training.config import MIXED_PRECISION, REPORT_TO
    from pixelfold.training.data import RESIZE_FILTERS

    actions = {a.dest: a for a in build_arg_parser()._actions}
    assert tuple(actions["augment"].choices) == AUGMENT_KINDS
    assert tuple(actions["resize_filter"].choices) == tuple(RESIZE_FILTERS)
    assert tuple(actions["mixed_precision"].choices) == MIXED_PRECISION
    assert tuple(actions["report_to"].choices) == tuple(REPORT_TO)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0"], "lr must be a finite positive number, got 0.0"),
        (["--style-mixing-prob", "2"], r"style_mixing_prob must be a finite number in \[0, 1\]"),
        (["--seed", "-1"], "seed must be an integer in 0..4294967295, got -1"),
        (["--num-workers", "-2"], "num_workers must be a non-negative integer, got -2"),
        (["--jpeg-quality", "0"], "jpeg_quality must be an integer in 1..100 or None, got 0"),
        (["--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
    ],
)
def test_bad_flags_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, prog="train")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train: error: ")
    assert re.search(message, err[-1]), err[-1]
