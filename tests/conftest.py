"""Shared test settings: offline hubs, deterministic torch, Hypothesis profiles."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# keep datasets' cache (image folders, saved datasets) out of the user's home
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="pixelfold-hf-datasets-"))
os.environ.setdefault("TQDM_DISABLE", "1")
# metric feature caches of the tests stay out of the user's home too
os.environ.setdefault("PIXELFOLD_CACHE", tempfile.mkdtemp(prefix="pixelfold-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# with pytest-xdist, share the cores between the workers: two workers with two threads each
# on two cores oversubscribe them (OpenMP threads spin), which made some files 10x slower
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // max(_workers, 1))))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny tensors (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): they gain nothing from a second thread,
    and on cores shared with other busy processes an OpenMP thread waiting for a descheduled
    peer made such files 10-20x slower (measured: a 0.065 s training step took 0.79 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody may write in: chmod for a normal user, the immutable attribute as root
    (root ignores permissions)."""
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: no way to make a read-only folder")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture(scope="session")
def lpips_files(tmp_path_factory) -> tuple[str, str]:
    """Random LPIPS linear layers and a random VGG16 (the classifier, unused by LPIPS, is a
    broadcast zero so that the file stays small)."""
    import math

    import torchvision

    folder = tmp_path_factory.mktemp("lpips")
    gen = torch.Generator().manual_seed(0)
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen)
            for i, c in enumerate((64, 128, 256, 512, 512))}
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    vgg = {}
    for key, shape in shapes.items():
        if key.startswith("features") and key.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            vgg[key] = torch.randn(shape, generator=gen) * math.sqrt(2 / fan_in)
        else:
            vgg[key] = torch.zeros(1).expand(shape)
    torch.save(lins, folder / "lpips.pth")
    torch.save(vgg, folder / "vgg16.pth")
    return str(folder / "lpips.pth"), str(folder / "vgg16.pth")
