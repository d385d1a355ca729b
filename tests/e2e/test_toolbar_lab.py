"""The web agent toolbar in headless Chromium (Debian's, driven by Playwright) against the lab."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from astcti.api.protocol import REQUESTS
from tests.lab import Lab
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

import astcti.api.requests  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def page(lab: Lab) -> AsyncIterator:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make venv` installs it (apt-get install chromium)")
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="astcti-chromium-")
    async with async_playwright() as pw:
        # a persistent context is how Playwright takes a fresh --user-data-dir
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        page = context.pages[0] if context.pages else await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(f"http://127.0.0.1:{lab.config.rest_port}/toolbar/")
            yield page
            assert not errors, errors
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def _log_in_and_monitor(page, lab: Lab, extension: str) -> None:
    await page.fill("#username", lab.config.astcti_user)
    await page.fill("#password", lab.config.astcti_password)
    await page.click("#login")
    await page.wait_for_selector("text=logged in as agent")
    await page.fill("#extension", extension)
    await page.click("#monitor")
    await page.wait_for_selector(f"text=monitoring {extension}")


async def test_toolbar_has_a_button_for_every_request(page) -> None:
    await page.wait_for_selector("#requests button")
    names = set(await page.eval_on_selector_all("#requests button",
                                                "els => els.map(e => e.dataset.request)"))
    assert names == set(REQUESTS) - {"login", "logout"}


async def test_toolbar_shows_a_real_inbound_call(page, lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=500))
    try:
        await _log_in_and_monitor(page, lab, "101")
        caller = lab.call("101", talk_ms=4000)
        await page.wait_for_selector('#calls tr[data-state="connected"]', timeout=20000)
        await page.wait_for_selector('#log li[data-event="delivered"]')
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "toolbar-inbound.png"), full_page=True)
        row = await page.text_content('#calls tr[data-state="connected"]')
        assert "0912345678" in (row or "") and "incoming" in (row or "")
        callid = await page.get_attribute('#calls tr[data-state="connected"]', "data-callid")
        # the snapshot button goes through the same generated form
        await page.click('#requests button[data-request="snapshot"]')
        assert await page.input_value("#field-extension") == "101"
        await page.click("#send")
        await page.wait_for_selector('#last-response:has-text("calls")')
        caller.wait(30)
        await page.wait_for_selector(f'#calls tr[data-callid="{callid}"]', state="detached",
                                     timeout=20000)
    finally:
        lab.stop_phone("101")


async def test_toolbar_make_call_shows_the_call_established(page, lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=500))
    try:
        await _log_in_and_monitor(page, lab, "101")
        await page.click('#requests button[data-request="makecall"]')
        await page.fill("#field-destination", "102")
        await page.click("#send")
        await page.wait_for_selector('#last-response:has-text("success")')
        row = '#calls tr[data-state="connected"][data-called="102"]'
        await page.wait_for_selector(row, timeout=30000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "toolbar-makecall.png"), full_page=True)
        assert lab.phones["102"].received("INVITE")
        # Hang up from the toolbar: the call's id is filled in from the selected row
        callid = await page.get_attribute(row, "data-callid")
        await page.click(row)
        await page.click('#requests button[data-request="hangup"]')
        assert await page.input_value("#field-callid") == callid
        await page.click("#send")
        await page.wait_for_selector(f'#calls tr[data-callid="{callid}"]', state="detached",
                                     timeout=20000)
    finally:
        lab.stop_phone("101")
        lab.stop_phone("102")
