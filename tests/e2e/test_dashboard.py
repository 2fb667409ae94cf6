"""The operators' dashboard in a real browser (Debian's chromium, driven through its
chromedriver) against the running system: nothing but the sign-in form without a session;
after signing in, the KPIs on the page are the ones the API gives, a return's timeline
shows its events in the coordinator's order, and axe-core finds no serious or critical
accessibility violation. A screenshot is kept under the test artifacts."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from services.tools.local_stack.stack import OPERATOR_TOKENS, OPS, LocalStack
from tests.e2e.scenario import create_return, post_scan_when_ready, scan, wait_for_status

ROOT = Path(__file__).resolve().parents[2]
AXE = sorted((ROOT / ".cache").glob("axe-core-*/axe.min.js"))
ARTIFACTS = Path(os.environ.get("BOOMERANG_TEST_ARTIFACTS") or ROOT / ".cache" / "test-artifacts")
TOKEN = OPERATOR_TOKENS["operator-1"]
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 30


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver and AXE):
        pytest.fail("the browser test needs chromium, chromedriver and axe-core: make browser")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,2200",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def ops_url(stack: LocalStack) -> str:
    return stack.url(OPS)


def wait(driver: WebDriver, condition, what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition, message=what)


def refreshes(driver: WebDriver) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes") or 0)


def page_kpis(driver: WebDriver) -> dict[str, Any]:
    return {
        element.get_attribute("data-kpi"): json.loads(element.get_attribute("data-value"))
        for element in driver.find_elements(By.CSS_SELECTOR, "[data-kpi]")
    }


AGES = ("inspection_oldest_age_s",)  # read at each request: a second apart, a second older


def same_figures(shown: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(shown[k] == expected[k] for k in shown if k not in AGES)


def at_path(figures: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        figures = figures[key]
    return figures


def serious_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA and best-practice run: the serious and critical findings."""
    driver.execute_script(AXE[-1].read_text())
    found = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                     "best-practice"]})
           .then((result) => done(result.violations.map((v) => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}))))
           .catch((error) => done([{id: "axe-failed", impact: "critical",
                                    help: String(error), nodes: []}]));"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_without_a_session_only_the_sign_in_form_is_served(stack, browser, http):
    url = ops_url(stack)
    browser.delete_all_cookies()
    browser.get(f"{url}/dashboard")
    assert browser.find_elements(By.ID, "token")
    assert not browser.find_elements(By.ID, "kpis")
    assert serious_violations(browser) == []
    for path in ("kpis", "reviews", "dead-letters", "lag", "returns/RMA-ANY"):
        answer = http.get(f"{url}/dashboard/api/{path}")
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"] == "unauthenticated"
    wrong = http.post(f"{url}/dashboard/sign-in", data={"token": "not-an-operator-token"})
    assert wrong.status_code == 401 and "not an operator" in wrong.text


def test_the_dashboard_shows_the_apis_kpis_and_a_returns_timeline(stack, browser, http):
    url = ops_url(stack)
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers).status_code == 202
    view = wait_for_status(http, stack, return_id, {"COMPLETED"})

    browser.delete_all_cookies()
    browser.get(f"{url}/dashboard")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, lambda d: d.find_elements(By.ID, "kpis"), "the dashboard after signing in")
    assert browser.find_element(By.ID, "operator").text == "operator-1"
    wait(browser, lambda d: refreshes(d) >= 1, "the first refresh")

    # the page's KPIs are the API's (asked right after a refresh, until the loop is quiet)
    deadline = time.monotonic() + WAIT_S
    while True:
        before = refreshes(browser)
        browser.find_element(By.ID, "refresh").click()
        wait(browser, lambda d, n=before: refreshes(d) > n, "a refresh")
        shown = page_kpis(browser)
        api = http.get(f"{url}/dashboard/api/kpis", headers=BEARER).json()
        expected = {path: at_path(api, path) for path in shown}
        if same_figures(shown, expected) or time.monotonic() > deadline:
            break
    assert {k: v for k, v in shown.items() if k not in AGES} == {
        k: v for k, v in expected.items() if k not in AGES
    }
    for age in AGES:  # an age grows between the page's read and the API's
        assert abs((shown[age] or 0) - (expected[age] or 0)) <= 10, age
    assert len(shown) >= 15
    assert shown["returns_started"] >= 1
    assert shown["refund_request_to_money.p50_s"] is not None
    assert api["sources"] and set(api["sources"].values()) == {"ok"}

    # the return's timeline: its events in the coordinator's order, with the money moved
    field = browser.find_element(By.ID, "return-id")
    field.clear()
    field.send_keys(return_id)
    browser.find_element(By.CSS_SELECTOR, "#timeline-form button").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-entries li"), "timeline")
    items = browser.find_elements(By.CSS_SELECTOR, "#timeline-entries li")
    events = [
        i.get_attribute("data-title") for i in items if i.get_attribute("data-kind") == "event"
    ]
    assert events == [entry["event_type"] for entry in view["history"]]
    kinds = {i.get_attribute("data-kind") for i in items}
    assert {"event", "rule", "money"} <= kinds
    assert return_id in browser.find_element(By.ID, "timeline").text
    times = [i.find_element(By.TAG_NAME, "time").get_attribute("datetime") for i in items]
    assert times == sorted(times)

    assert serious_violations(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(800, min(int(height) + 40, 6000)))  # the whole page
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_an_unknown_return_is_said_so_on_the_page(stack, browser):
    url = ops_url(stack)
    browser.get(f"{url}/dashboard?return_id=RMA-NO-SUCH-RETURN")
    alert = wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline [role=alert]"),
        "the timeline's refusal",
    )
    assert "no return RMA-NO-SUCH-RETURN" in alert[0].text


def test_signing_out_ends_the_session(stack, browser):
    url = ops_url(stack)
    browser.get(f"{url}/dashboard")
    try:
        browser.find_element(By.CSS_SELECTOR, "header form button").click()
    except WebDriverException:
        pytest.fail("no sign-out button on the signed-in page")
    wait(browser, lambda d: d.find_elements(By.ID, "token"), "the sign-in form again")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert "boomerang_ops_session" not in cookies
    assert httpx.get(f"{url}/dashboard/api/kpis").status_code == 401
