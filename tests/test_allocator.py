"""The CPU memory cache (glibc malloc settings): it takes effect, large blocks stop being
mmapped, it refuses quietly elsewhere, and the trainer turns it on for CPU runs only when
asked. The process-wide effect is checked in a subprocess, so the test process keeps its own
allocator."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
import textwrap

import pytest

from pixelfold.utils import allocator

from .training_helpers import _config, _write_images, reset_accelerate  # noqa: F401

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the cache is made of glibc malloc settings; this C "
                    "library is not glibc")
def test_large_blocks_come_from_the_heap_once_enabled():
    """mallinfo2's ``hblkhd`` (bytes in mmapped blocks) grows by a 64 MiB tensor under the
    default settings and not once the cache is on; the call is idempotent."""
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2 to read the heap with")
    script = textwrap.dedent("""
        import ctypes, torch
        from pixelfold.utils import cpu_memory_cache_enabled, enable_cpu_memory_cache
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks",
                        "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                        "keepcost")]
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Info
        def mmapped_growth():
            before = libc.mallinfo2().hblkhd
            t = torch.empty(64 * 2**20, dtype=torch.uint8)
            grown = libc.mallinfo2().hblkhd - before
            del t
            return grown
        print(cpu_memory_cache_enabled(), mmapped_growth() >= 64 * 2**20)
        print(enable_cpu_memory_cache(), enable_cpu_memory_cache(), cpu_memory_cache_enabled())
        print(mmapped_growth())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True", "True", "True", "0"]


def test_other_c_libraries_and_a_refused_setting_change_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_enabled", False)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda *a, **k: ("", ""))
    assert allocator._glibc_mallopt() is None
    assert allocator.enable_cpu_memory_cache() is False
    assert not allocator.cpu_memory_cache_enabled()
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: lambda param, value: 0)
    assert allocator.enable_cpu_memory_cache() is False  # mallopt said no
    assert not allocator.cpu_memory_cache_enabled()


@pytest.mark.parametrize("wanted", [True, False])
def test_the_trainer_enables_it_for_cpu_runs_when_asked(tmp_path, monkeypatch, wanted):
    from pixelfold.training import GANTrainer
    from pixelfold.training import trainer as trainer_module

    reset_accelerate()
    calls = []
    monkeypatch.setattr(trainer_module, "cpu_memory_cache_enabled", lambda: False)
    monkeypatch.setattr(trainer_module, "enable_cpu_memory_cache",
                        lambda: calls.append(1) or True)
    _write_images(tmp_path / "images")
    GANTrainer(_config(tmp_path, cpu_memory_cache=wanted))
    reset_accelerate()
    assert calls == ([1] if wanted else [])


def test_the_flag_and_its_check():
    from pixelfold.training import TrainConfig, parse_args
    from pixelfold.utils import ConfigError

    assert TrainConfig().cpu_memory_cache
    assert not parse_args(["--no-cpu-memory-cache"]).cpu_memory_cache
    with pytest.raises(ConfigError, match="cpu_memory_cache"):
        TrainConfig(cpu_memory_cache="yes")
