"""pixelfold.utils: state files without pickles, safe weights reading, atomic folders,
leftover recovery, the run lock, disk-full reporting, memory checks and the CLI handler."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixelfold.utils import (
    CheckpointError,
    ConfigError,
    DiskFullError,
    MemoryLimitError,
    NonFiniteError,
    RunFolderError,
    RunLock,
    TrainingInterrupted,
    atomic_directory,
    atomic_write_text,
    check_finite,
    check_fits,
    cleanup_leftovers,
    disk_errors,
    frozen_parameters,
    load_state,
    load_tensor_file,
    one_line,
    run_main,
    save_state,
)
from pixelfold.utils.files import exchange_paths

ROOT = Path(__file__).resolve().parents[1]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------- state files


def test_state_files_round_trip_nested_states_exactly(tmp_path):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3, 2))], betas=(0.0, 0.99))
    opt.param_groups[0]["params"][0].grad = torch.ones(3, 2)
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "none": None,
             "floats": [float("nan"), float("inf"), -float("inf"), 0.5], "flag": True,
             "tuple": (1, "a", (2.0,)), "int_keys": {3: "x", 7: torch.arange(4)}}
    path = save_state(tmp_path / "s.safetensors", state, metadata={"note": "hi"})
    back, meta = load_state(path)
    assert meta == {"note": "hi"}
    assert back["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.0, 0.99)  # a tuple again
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][k], v)
    assert torch.equal(back["rng"], state["rng"]) and back["none"] is None
    assert str(back["floats"]) == str(state["floats"]) and back["flag"] is True
    assert back["tuple"] == (1, "a", (2.0,))
    assert back["int_keys"][3] == "x" and torch.equal(back["int_keys"][7], torch.arange(4))
    opt.load_state_dict(back["optimizer"])


def test_state_files_refuse_objects_and_foreign_files(tmp_path):
    with pytest.raises(TypeError, match=r"s.safetensors.x: cannot store a object"):
        save_state(tmp_path / "s.safetensors", {"x": object()})
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="is not a pixelfold state file"):
        load_state(tmp_path / "plain.safetensors")
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(CheckpointError, match="text.safetensors is corrupt or truncated"):
        load_state(tmp_path / "text.safetensors")


# ---------------------------------------------------------------- weights files


def test_load_tensor_file_never_runs_a_pickle(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": _Evil(marker)}, evil)
    with pytest.raises(ValueError, match=r"evil.pt as the weights: it holds pickled Python "
                                         r"objects besides tensors"):
        load_tensor_file(evil)
    assert not marker.exists()


def test_load_tensor_file_explains_what_a_file_is(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, good)
    assert torch.equal(load_tensor_file(good, key="state_dict")["w"], torch.ones(2))
    script = tmp_path / "script.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    with pytest.raises(ValueError, match="is a TorchScript archive"):
        load_tensor_file(script, what="Inception weights")
    text = tmp_path / "text.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"cannot read .*text.pth as the VGG weights: it is a "
                                         r"text file, not a PyTorch"):
        load_tensor_file(text, what="VGG weights")
    binary = tmp_path / "binary.pth"
    binary.write_bytes(bytes(range(200, 256)) * 4)
    with pytest.raises(ValueError, match=r"binary.pth as the weights: it is neither a PyTorch"):
        load_tensor_file(binary)
    nested = tmp_path / "nested.pt"
    torch.save({"a": {"b": torch.ones(1)}}, nested)
    with pytest.raises(ValueError, match="not a flat state dict of tensors"):
        load_tensor_file(nested)
    with pytest.raises(FileNotFoundError, match="no weights file at"):
        load_tensor_file(tmp_path / "missing.pt")


def test_check_finite_names_the_tensors():
    check_finite({"a": torch.ones(2), "n": torch.arange(3)}, what="the weights")
    with pytest.raises(NonFiniteError, match=r"the weights in f.safetensors hold non-finite "
                                             r"values \(NaN or infinity\): b \(1 of 3\)"):
        check_finite({"a": torch.ones(2), "b": torch.tensor([1.0, float("inf"), 2.0])},
                     what="the weights", source="f.safetensors")


# ---------------------------------------------------------------- atomic folders



def test_frozen_parameters_restores_each_flag_even_after_an_error():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].bias.requires_grad_(False)  # frozen before: stays frozen
    before = [p.requires_grad for p in model.parameters()]
    with frozen_parameters(model) as m:
        assert m is model and not any(p.requires_grad for p in model.parameters())
        x = torch.ones(3, 2, requires_grad=True)
        model(x).sum().backward()
        assert x.grad is not None and all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == before == [True, False, True, True]
    with pytest.raises(KeyError), frozen_parameters(model):
        raise KeyError("inside")
    assert [p.requires_grad for p in model.parameters()] == before

@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_atomic_directory_replaces_and_keeps_no_leftovers(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setenv("PIXELFOLD_NO_EXCHANGE", "1")
    target = tmp_path / "model"
    for text in ("one", "two"):
        with atomic_directory(target) as tmp:
            (tmp / "w.txt").write_text(text)
    assert (target / "w.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(target) as tmp:
        (tmp / "w.txt").write_text("three")
        raise RuntimeError("boom")
    assert (target / "w.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not exchange_paths(a, b):
        pytest.skip("this file system has no atomic exchange (renameat2)")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_a_swap_killed_between_renames_is_undone(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "w.txt").write_text("old")
    code = ("import sys; from pathlib import Path; from pixelfold.utils import atomic_directory\n"
            "with atomic_directory(sys.argv[1]) as tmp:\n"
            "    (Path(tmp) / 'w.txt').write_text('new')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), PIXELFOLD_NO_EXCHANGE="1",
                                   PIXELFOLD_TEST_DIE_BETWEEN_RENAMES="1"))
    assert proc.returncode == 9
    assert not target.exists()
    assert len(list(tmp_path.glob(".model.old-*"))) == 1
    assert len(list(tmp_path.glob(".model.tmp-*"))) == 1
    done = cleanup_leftovers(target)
    assert (target / "w.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert done[0].startswith("restored") and done[1].startswith("removed leftover")


def test_leftovers_of_live_processes_are_kept(tmp_path):
    (tmp_path / "model").mkdir()
    mine = tmp_path / f".model.tmp-{os.getpid()}-abc"
    mine.mkdir()
    dead = tmp_path / ".model.tmp-999999-abc"
    dead.mkdir()
    cleanup_leftovers(tmp_path / "model")
    assert mine.exists() and not dead.exists()
    cleanup_leftovers(tmp_path / "model", force=True)
    assert not mine.exists()


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_directory(tmp_path / "m") as tmp:
            (tmp / "f").write_text("x")
            from safetensors.torch import save_file

            save_file({"a": torch.zeros(1)}, str(tmp / "w.safetensors"))  # written 0600
        atomic_write_text(tmp_path / "t.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "m" / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m" / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- disk full


def test_a_full_disk_is_named_and_the_partial_output_removed(tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    with pytest.raises(DiskFullError, match=r"no space left on the device while writing .*out"
                                            r".*the partial output was removed"):
        with disk_errors(tmp_path / "out", cleanup=partial):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not partial.exists()
    # what safetensors (Rust) says
    with pytest.raises(DiskFullError):
        with disk_errors(tmp_path / "out"):
            raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: '
                               'StorageFull, message: "No space left on device" })')
    with pytest.raises(PermissionError):  # other errors pass unchanged
        with disk_errors(tmp_path / "out"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_atomic_writes_on_a_full_tmpfs(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): covered by the ENOSPC tests")
    try:
        with pytest.raises(DiskFullError, match="no space left on the device while writing"):
            atomic_write_text(small / "big.json", "x" * 200_000)
        with pytest.raises(DiskFullError, match="no space left on the device while writing"):
            with atomic_directory(small / "model") as tmp:
                (tmp / "w").write_bytes(b"0" * 200_000)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ---------------------------------------------------------------- the run lock


def test_run_lock_is_exclusive_and_released(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    info = json.loads((tmp_path / "run" / ".lock").read_text())
    assert info["pid"] == os.getpid()
    with pytest.raises(RunFolderError, match=rf"is in use by process {os.getpid()} on "):
        RunLock(tmp_path / "run").acquire()
    lock.release()
    lock.release()  # idempotent
    assert not (tmp_path / "run" / ".lock").exists()
    with RunLock(tmp_path / "run") as again:
        assert again.held and again.taken_over is None


# ---------------------------------------------------------------- memory


def test_check_fits_refuses_with_the_estimate(monkeypatch):
    monkeypatch.setenv("PIXELFOLD_MEMORY_LIMIT", str(1 << 30))
    check_fits(1 << 20, "a small thing")
    with pytest.raises(MemoryLimitError, match=r"a grid needs about 2.0 TiB but cpu has 1.0 GiB "
                                               r"available; use fewer seeds"):
        check_fits(2 << 40, "a grid", hint="use fewer seeds")


# ---------------------------------------------------------------- the CLI handler


def test_run_main_statuses(capsys):
    assert run_main(lambda: None, prog="p") == 0

    def raiser(exc):
        def main():
            raise exc
        return main

    assert run_main(raiser(ConfigError("--lr nan: bad\n  value")), prog="p") == 2
    assert capsys.readouterr().err == "p: error: --lr nan: bad value\n"
    assert run_main(raiser(FileNotFoundError(errno.ENOENT, "No such file or directory", "x")),
                    prog="p") == 2
    assert capsys.readouterr().err == "p: error: No such file or directory: x\n"
    assert run_main(raiser(TrainingInterrupted("stopped by SIGINT at step 3")), prog="p") == 130
    assert capsys.readouterr().err == "p: stopped by SIGINT at step 3\n"
    assert run_main(raiser(KeyboardInterrupt()), prog="p") == 130
    assert capsys.readouterr().err == "p: interrupted\n"
    assert run_main(raiser(ZeroDivisionError("a bug")), prog="p") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error (a bug in pixelfold" in err
    with pytest.raises(ConfigError):
        run_main(raiser(ConfigError("x")), prog="p", debug=True)


def test_one_line():
    assert one_line(KeyError("unknown preset 'x'")) == "unknown preset 'x'"
    assert one_line(ValueError("a\n\n b")) == "a b"
    assert one_line(ValueError()) == "ValueError"


def test_from_pretrained_finds_a_model_whose_save_was_killed_mid_swap(tmp_path):
    from pixelfold.models import Generator

    target = tmp_path / "model"
    G = Generator.from_preset("pixelfolder-tiny-32")
    G.save_pretrained(target)
    code = ("import sys; from pixelfold.models import Generator\n"
            "Generator.from_preset('pixelfolder-tiny-32').save_pretrained(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), PIXELFOLD_NO_EXCHANGE="1",
                                   PIXELFOLD_TEST_DIE_BETWEEN_RENAMES="1"))
    assert proc.returncode == 9 and not target.exists()
    loaded = Generator.from_pretrained(target)  # the old folder, put back
    for k, v in G.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
