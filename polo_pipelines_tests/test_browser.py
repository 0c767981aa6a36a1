"""The pages in a real browser (Debian's chromium and chromium-driver, driven by Selenium): the drill-down walked from
the total to a mover, its resources and one resource's timeline and back; a rule created, edited and disabled through
the form. Each page's picture is saved (to docs/screenshots/ with ``make screenshots``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from polo_pipelines.rules import ruleset
from polo_pipelines.web.app import create_app

from .conftest import TODAY
from .test_web import TOKEN, Served, world  # noqa: F401  (the module's sample world, reused)

CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser():
    if not CHROMEDRIVER.exists():
        if os.environ.get("POLO_TEST_REQUIRE_BROWSER"):
            pytest.fail("POLO_TEST_REQUIRE_BROWSER is set but /usr/bin/chromedriver is missing: apt-get install chromium chromium-driver")
        pytest.skip("no browser here: apt-get install chromium chromium-driver (CI installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


@pytest.fixture
def site(world, tmp_path):  # noqa: F811
    dsn, rules_path = world
    mine = tmp_path / "rules.yaml"
    shutil.copy(rules_path, mine)
    served = Served(create_app(dsn, rules_path=mine, token=TOKEN, today=lambda: TODAY))
    yield served, mine
    served.stop()


def pictures(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("POLO_TEST_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def follow(driver, element) -> None:
    """Click what leads to another page and wait until the page it was on is gone (else the next look may still
    see the old page)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(_driver) -> bool:
        try:
            element.is_enabled()
            return False
        except WebDriverException:  # stale, or "does not belong to the document" while the next page comes in
            return True

    element.click()
    WebDriverWait(driver, 30).until(gone)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def snap(driver, folder: Path, name: str) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1200, max(800, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(folder / f"polo-{name}.png"))
    driver.set_window_size(1200, 1000)


def test_walk_the_drill_down_from_the_total_to_a_resources_timeline_and_back(browser, site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    served, _ = site
    shots = pictures(tmp_path)
    browser.get(served.url + "/")
    total = browser.find_element(By.ID, "total").text
    assert "this period" in total and "$" in total
    assert browser.find_elements(By.CSS_SELECTOR, ".card.account")  # a card per account
    snap(browser, shots, "dashboard")

    follow(browser, browser.find_element(By.LINK_TEXT, "Why did it move? →"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Why costs moved"
    causes = browser.find_elements(By.CSS_SELECTOR, "#causes a.cause")
    first = causes[0].text
    assert first == "cluster:acme-prod-1"
    bar = browser.find_element(By.CSS_SELECTOR, ".bar.up")  # increases red, decreases green
    assert bar.value_of_css_property("background-color") == "rgba(198, 40, 40, 1)"
    for fell in browser.find_elements(By.CSS_SELECTOR, "td.down"):
        assert fell.text.startswith("-") and fell.value_of_css_property("color") == "rgba(46, 125, 50, 1)"
    snap(browser, shots, "delta")

    # the period selector keeps its state in the URL
    follow(browser, browser.find_element(By.LINK_TEXT, "14 days"))
    assert "days=14" in browser.current_url and "14 days" in browser.find_element(By.CSS_SELECTOR, ".pill.here").text
    browser.back()
    WebDriverWait(browser, 30).until(lambda d: "days=" not in d.current_url)

    follow(browser, browser.find_element(By.LINK_TEXT, first))
    assert browser.find_element(By.TAG_NAME, "h1").text == "cluster:acme-prod-1"
    nat = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#resources a.resource") if a.text.startswith("nat-"))
    snap(browser, shots, "resources")
    resources_url = browser.current_url
    follow(browser, nat)

    explanation = browser.find_element(By.ID, "explanation").text
    assert explanation.startswith("Explanation:") and "alice@example.com" in explanation
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tr.event")
    assert {r.get_attribute("class").split()[-1] for r in rows} >= {"cost", "config"}
    assert any("alice@example.com" in r.text for r in rows)
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart.line circle")  # the cost line
    snap(browser, shots, "resource")
    pasted = browser.current_url

    browser.back()
    WebDriverWait(browser, 30).until(lambda d: d.current_url == resources_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "cluster:acme-prod-1"
    browser.get(pasted)  # a link pasted into a chat opens the same view
    assert browser.find_element(By.ID, "explanation").text == explanation

    for name, path in (("violations", "/violations"), ("compliance", "/compliance"), ("api", "/docs")):
        browser.get(served.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text
        snap(browser, shots, name)
    browser.get(served.url + "/compliance")
    assert "% compliant" in browser.find_element(By.ID, "compliance").text


def test_create_edit_and_disable_a_rule_through_the_form(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    served, rules_path = site
    shots = pictures(tmp_path)
    browser.get(served.url + "/policies")
    assert not browser.find_elements(By.ID, "new-rule")  # not signed in: no changes offered
    browser.get(served.url + "/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    follow(browser, browser.find_element(By.ID, "sign-in"))
    assert browser.current_url.endswith("/policies")
    snap(browser, shots, "policies")

    follow(browser, browser.find_element(By.ID, "new-rule"))
    form = browser.find_element(By.ID, "rule-form")
    form.find_element(By.NAME, "id").send_keys("acme-daily")
    form.find_element(By.NAME, "name").send_keys("Acme under $300 a day")
    form.find_element(By.NAME, "hierarchy").send_keys("marqo_logical")
    form.find_element(By.NAME, "node").send_keys("customer:acme")
    form.find_element(By.NAME, "condition_max_usd").send_keys("300")
    form.find_element(By.NAME, "condition_period").send_keys("day")
    snap(browser, shots, "rule-form")
    follow(browser, browser.find_element(By.ID, "save"))
    assert "Saved acme-daily" in browser.find_element(By.ID, "saved").text
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-rule="acme-daily"]')
    assert "customer:acme" in row.text and row.find_element(By.CSS_SELECTOR, "td.state").text == "enabled"
    assert ruleset.load(rules_path)[-1].condition["max_usd"] == 300

    # a wrong value gets the rule file's own message, on the form
    follow(browser, row.find_element(By.CSS_SELECTOR, "a.edit"))
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.NAME, "severity")).select_by_visible_text("critical")
    amount = browser.find_element(By.NAME, "condition_max_usd")
    amount.clear()
    amount.send_keys("-5")
    follow(browser, browser.find_element(By.ID, "save"))
    assert "max_usd" in browser.find_element(By.ID, "problem").text
    amount = browser.find_element(By.NAME, "condition_max_usd")
    amount.clear()
    amount.send_keys("450")
    follow(browser, browser.find_element(By.ID, "save"))
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-rule="acme-daily"]')
    assert "critical" in row.text
    saved = yaml.safe_load(rules_path.read_text())["rules"][-1]
    assert saved["condition"]["max_usd"] == 450 and saved["severity"] == "critical"

    follow(browser, row.find_element(By.CSS_SELECTOR, "button.toggle"))
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-rule="acme-daily"]')
    assert row.find_element(By.CSS_SELECTOR, "td.state").text == "disabled"
    assert ruleset.load(rules_path)[-1].enabled is False
