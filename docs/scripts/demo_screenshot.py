"""Take the screenshot of docs/demo.md: the demo page of a model in headless Chromium.

    python docs/scripts/demo_screenshot.py                       # pixelfolder-tiny-64
    python docs/scripts/demo_screenshot.py runs/ffhq256/final    # a trained model

Needs gradio and selenium (the ``dev`` extra) and Debian's ``chromium`` and
``chromium-driver``. The page is the one ``pixelfold demo MODEL`` serves (the same Chromium
flags as tests/test_demo.py); the PNG is reduced to a 256-colour palette so that it stays
small (docs/assets/demo.png, under 200 KB).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "assets" / "demo.png"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1200,1500")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="pixelfolder-tiny-64")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pixelfold.tools.demo import launch_demo

    demo = launch_demo(args.model, port=0, block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    profile = tempfile.mkdtemp(prefix="pixelfold-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                               options=options)
    try:
        browser.get(demo.local_url)
        wait = WebDriverWait(browser, 60)
        for panel in ("sample", "mix", "strip"):
            wait.until(lambda b, p=panel: b.find_elements(By.CSS_SELECTOR, f"#{p} img"))
        time.sleep(1.0)  # the images fade in
        browser.execute_script("document.querySelectorAll('footer').forEach(f => f.remove())")
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1200, min(int(height) + 40, 2000))
        time.sleep(0.5)
        shot = Image.open(BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    finally:
        browser.quit()
        demo.close()
        shutil.rmtree(profile, ignore_errors=True)
    ink = Image.eval(shot.convert("L"), lambda v: 255 if v < 250 else 0).getbbox()
    if ink is not None:  # the page's content, without the empty space below it
        shot = shot.crop((0, 0, shot.width, min(shot.height, ink[3] + 16)))
    shot = shot.resize((shot.width * 3 // 4, shot.height * 3 // 4), Image.LANCZOS)
    shot.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB, "
          f"{shot.width}x{shot.height})")


if __name__ == "__main__":
    main()
