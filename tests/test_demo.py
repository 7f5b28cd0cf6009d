"""``pixelfold demo``: the images of the page (no browser needed), the command's bad input,
and the page itself in a real headless Chromium (selenium + chromedriver): it loads, a seed
slider moved with the keyboard changes the image. The browser test is skipped, saying what is
missing, where gradio, selenium, chromium or chromedriver is not installed; CI installs them
(``.ci/run``: ``apt-get install -y chromium chromium-driver``, the ``dev`` extra)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time

import pytest
import torch
from PIL import Image, ImageChops

from pixelfold.models import Generator
from pixelfold.tools.demo import DemoRenderer, edit_directions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset("pixelfolder-tiny-32").eval()


def _same(a, b, tolerance: int = 0) -> bool:
    """Same size and pixels (within ``tolerance`` levels)."""
    if a.size != b.size:
        return False
    extrema = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getextrema()
    return max(high for _, high in extrema) <= tolerance


def _shrink(image, size):
    return image.resize(size, Image.NEAREST)


# ---- the images of the page --------------------------------------------------------------------


def test_renderer_images(generator):
    r = DemoRenderer(generator)
    assert r.stage_labels[0].startswith("stage 0 (ws 0-")
    a = r.sample(3)
    assert a.size == (256, 256)  # 32x32 enlarged 8x (nearest)
    assert _same(a, r.sample(3)) and not _same(a, r.sample(4))
    assert not _same(a, r.sample(3, truncation_psi=0.5))
    assert _same(r.sample(3, truncation_psi=0.0), r.sample(9, truncation_psi=0.0))  # w_avg
    # mixing: the second seed's image, then the mix; no stage ticked: the first seed's image
    mixed = r.mix(3, 4, [])
    assert mixed.size == (512, 256)
    assert _same(mixed.crop((256, 0, 512, 256)), a)
    assert _same(mixed.crop((0, 0, 256, 256)), r.sample(4))
    every = r.mix(3, 4, r.stage_labels)
    assert _same(every.crop((256, 0, 512, 256)), r.sample(4))
    one = r.mix(3, 4, r.stage_labels[-1:])
    assert not _same(one.crop((256, 0, 512, 256)), a)
    strip = r.strip(3, 4, steps=5)
    assert strip.size == (5 * 96, 96)
    ends = _shrink(strip, (5 * 32, 32))  # the ends are the two seeds' images (slerp at 0, 1)
    assert _same(ends.crop((0, 0, 32, 32)), _shrink(a, (32, 32)), tolerance=1)
    assert _same(ends.crop((128, 0, 160, 32)), _shrink(r.sample(4), (32, 32)), tolerance=1)
    assert r.strip(3, 4, steps=5, space="w").size == (5 * 96, 96)
    assert r.edit(3, 0, 2.0) is None  # no directions


def test_renderer_edits_and_their_detection(generator, monkeypatch):
    directions = torch.linalg.qr(torch.randn(generator.w_dim, 4))[0].T  # 4 orthonormal rows
    r = DemoRenderer(generator, directions=directions)
    base = r.sample(3)
    assert _same(r.edit(3, 1, 0.0), base) and not _same(r.edit(3, 1, 5.0), base)
    # the page's directions are pixelfold.tools.edit's SeFa directions, strongest first
    from pixelfold.tools.edit import sefa_directions

    found, values = edit_directions(generator, k=3)
    expected, eigenvalues = sefa_directions(generator)
    assert torch.equal(found, expected[:3]) and torch.equal(values, eigenvalues[:3])
    assert values[0] >= values[1] >= values[2]


def test_the_page_renders_quickly_for_a_tiny_preset(generator):
    """The work behind one control change, on the CPU: well under a second (measured:
    10-20 ms per image)."""
    r = DemoRenderer(generator)
    for fn in (lambda s: r.sample(s), lambda s: r.mix(s, s + 1, r.stage_labels[:1]),
               lambda s: r.strip(s, s + 1, 7)):
        fn(0)  # first calls set up the convolutions
        times = []
        for seed in range(1, 6):
            start = time.perf_counter()
            fn(seed)
            times.append(time.perf_counter() - start)
        assert sorted(times)[2] < 0.25, times  # the median


# ---- the command -------------------------------------------------------------------------------


def test_demo_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    from pixelfold.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # not found, import gradio fails
    assert main(["demo", "pixelfolder-tiny-32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == ('pixelfold demo: error: the demo needs gradio, which is not installed: '
                   'pip install "pixelfold[demo]"\n')
    from pixelfold.tools.demo import require_gradio

    with pytest.raises(ModuleNotFoundError, match=r'pip install "pixelfold\[demo\]"'):
        require_gradio()


def test_demo_bad_input(tmp_path, capsys):
    from pixelfold.cli import main

    if importlib.util.find_spec("gradio") is None:
        pytest.skip("the demo's checks after gradio's need gradio (pip install "
                    "\"pixelfold[demo]\")")
    assert main(["demo", str(tmp_path / "missing")]) == 2
    assert "is neither a folder with config.json" in capsys.readouterr().err
    assert main(["demo", "pixelfolder-tiny-32", "--port", "70000"]) == 2
    assert "--port 70000: expected 0 (a free port) to 65535" in capsys.readouterr().err
    assert main(["demo", "pixelfolder-tiny-32", "--host", ""]) == 2
    assert "--host is empty" in capsys.readouterr().err


# ---- the page in a headless browser ------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1280,1000")


def _browser_or_skip():
    missing = []
    for module, how in (("gradio", 'pip install "pixelfold[demo]"'),
                        ("selenium", 'pip install selenium (in "pixelfold[dev]")')):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} ({how})")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium (apt-get install -y chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install -y chromium-driver)")
    if missing:
        pytest.skip("no headless browser for the demo page: missing " + ", ".join(missing))
    return chromium, driver


def _src(browser, elem_id: str) -> str | None:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return found[0].get_attribute("src") if found else None


def test_the_page_in_a_headless_browser(generator, tmp_path):
    chromium, driver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from pixelfold.tools.demo import launch_demo

    directions = torch.linalg.qr(torch.randn(generator.w_dim, 3))[0].T  # an edit section too
    demo = launch_demo(generator, port=0, block=False, directions=directions)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        browser.get(demo.local_url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.05)
        first = wait.until(lambda b: _src(b, "sample"))
        for panel in ("mix", "strip", "edited"):
            assert wait.until(lambda b, p=panel: _src(b, p))
        # move the seed slider one step with the keyboard, as a user would
        slider = browser.find_element(By.CSS_SELECTOR, "#seed input[type=range]")
        slider.send_keys(Keys.ARROW_RIGHT)
        moved = time.perf_counter()
        second = wait.until(lambda b: (s := _src(b, "sample")) != first and s)
        seconds = time.perf_counter() - moved
        number = browser.find_element(By.CSS_SELECTOR, "#seed input[type=number]")
        assert number.get_attribute("value") == "1"
        assert second != first
        assert seconds < 5, f"the image took {seconds:.2f} s to change"
        print(f"\nseed 0 -> 1: the image changed {seconds * 1000:.0f} ms after the key press")
    finally:
        browser.quit()
        demo.close()
