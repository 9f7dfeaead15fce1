"""A screenshot of `cvae demo` answering a prompt, for the docs.

    python scripts/demo_screenshot.py docs/demo.png ["Make a dress"]

Starts the demo on the project's trained models (a free localhost port), types
the prompt in headless Chromium (Debian's chromium and chromium-driver), waits
for every model's grid and saves the page as a PNG.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = (  # headless, and no connection of Chromium's own (no network)
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def headless_chrome(
    profile: Path, *, width: int, height: int, flags: tuple[str, ...] = ()
):
    """Debian's chromium driven by its chromedriver (Selenium, nothing
    downloaded), with a fresh profile folder and ``flags`` added."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def main() -> None:
    out = Path(sys.argv[1])
    prompt = sys.argv[2] if len(sys.argv) > 2 else "Make a dress"
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cvae = Path(sys.executable).with_name("cvae")
    server = subprocess.Popen(
        [str(cvae), "demo", "--port", str(port), "--device", "cpu"]
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        profile = tempfile.mkdtemp(prefix="cvae-shot-")
        driver = headless_chrome(Path(profile), width=1400, height=1000)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 60)
            wait.until(
                ec.presence_of_element_located((By.CSS_SELECTOR, "#models input"))
            )
            box = driver.find_element(By.ID, "prompt")
            box.clear()
            box.send_keys(prompt)
            driver.find_element(By.ID, "go").click()
            boxes = len(driver.find_elements(By.CSS_SELECTOR, "#models input"))
            wait.until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == boxes
            )
            height = driver.execute_script(
                "return document.documentElement.scrollHeight"
            )
            driver.set_window_size(1400, max(600, height + 40))
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{out}: the demo answering {prompt!r}")


if __name__ == "__main__":
    main()
