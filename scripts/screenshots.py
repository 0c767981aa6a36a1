"""Screenshots of the Dagster UI over the sample world, for docs/screenshots/: the pages a data engineer opens first.

Run by `make screenshots` after `make run` (which fills the store and the Dagster instance): it starts the Dagster
webserver on a free loopback port over the same instance, drives Debian's headless Chromium through chromedriver
(Selenium), and writes one PNG per page. Needs the `chromium` and `chromium-driver` packages.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# (file, path, height, a button to press first): what a newcomer opens first
PAGES = (
    ("asset-collector.png", "/assets/aws_cost_events", 1100, ""),
    ("asset-plots.png", "/assets/aws_cost_events", 1300, "Plots"),
    ("asset-partitions.png", "/assets/aws_cost_events?view=partitions", 900, ""),
    ("asset-checks.png", "/assets/aws_cost_events?view=checks", 900, ""),
    ("rule-checks.png", "/assets/aws_inventory_events?view=checks", 900, ""),
    ("asset-weekly-delta.png", "/assets/cost_delta_nodes_weekly", 2000, ""),
    ("automation.png", "/automation", 1100, ""),
)
WIDTH = 1680


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(1)
    raise SystemExit(f"the Dagster webserver did not answer at {url} within {seconds:.0f} s")


def browser() -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={WIDTH},1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def dismiss_welcome(driver: webdriver.Chrome) -> None:
    """The webserver's first visit asks to join its community; a screenshot should show the page under it."""
    for _ in range(20):
        try:
            driver.find_element(By.XPATH, "//button[normalize-space()='Skip']").click()
            return
        except NoSuchElementException:
            time.sleep(0.5)


def main() -> int:
    env = dict(os.environ)
    home = Path(env.setdefault("POLO_HOME", str(ROOT / ".polo")))
    env.setdefault("DAGSTER_HOME", str(home / "dagster"))
    if not (home / "clickhouse").exists():
        raise SystemExit(f"no store under {home}: run `make run` first")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        wait_for(f"{base}/server_info")
        driver = browser()
        try:
            driver.get(f"{base}/assets")
            dismiss_welcome(driver)
            for name, path, height, button in PAGES:
                driver.set_window_size(WIDTH, height)
                driver.get(base + path)
                time.sleep(6)  # the page's GraphQL queries and charts settle
                if button:
                    driver.find_element(By.XPATH, f"//button[normalize-space()='{button}']").click()
                    time.sleep(4)
                driver.save_screenshot(str(OUT / name))
                print(f"docs/screenshots/{name}: {path}")
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
