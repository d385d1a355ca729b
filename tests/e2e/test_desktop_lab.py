"""The agent desktop (/agent/) and the supervisor wallboard (/wallboard/) in headless Chromium
(Debian's, driven by Playwright) against the lab: real calls through Asterisk, SIPp phones.

The desktop's buttons answer, hold, consult and transfer a queue call while the wallboard,
fed only by the events astcti pushes, shows the waiting caller and the agent's states. Both
pages are then driven with the keyboard alone on a 390 px phone screen. The screenshots go to
docs/ (docs/frontends.md shows them), so they stay current.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import set_parameters
from tests.lab import Lab
from tests.lab.ari import ari, bridges, channels, force_clean, wait_for
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CUSTOMER = "0912345678"
CUSTOMER_NAME = "Alice Example"
RINGS_UNTIL_ANSWERED = Phone(answer_after_ms=None, auto_answer=True)  # answers astcti's re-offer
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser(lab: Lab) -> AsyncIterator[Any]:
    """A fresh Chromium profile; new_page(viewport) opens a page that fails the test on errors."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make venv` installs it (apt-get install chromium)")
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="astcti-chromium-")
    errors: list[str] = []
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=WIDE)

        async def new_page(path: str, viewport: dict[str, int] = WIDE):
            page = await context.new_page()
            await page.set_viewport_size(viewport)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{lab.config.rest_port}{path}")
            return page

        try:
            yield new_page
            assert not errors, errors
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def desk_lab(lab: Lab):
    """Queue `support` as the agent's default queue, a screen pop to a page of the lab; the
    agent is logged off the queue and the phones stopped afterwards."""
    force_clean(lab)
    rest = f"http://127.0.0.1:{lab.config.rest_port}"
    set_parameters(lab, acti_agentgroups="support", acti_loginstate="notready",
                   acti_autoacw="0", acti_reasoncodes="break,lunch,training",
                   acti_screenpop_url=rest + "/assets/ui.css?phone={calling}"
                                             "&account={userdata.account}&queue={queue}",
                   acti_screenpop_mode="iframe")
    yield lab
    for ext in list(lab.phones):
        lab.stop_phone(ext)
    lab.rx("queue remove member Local/101@astcti-agent/n from support")
    force_clean(lab)
    set_parameters(lab, acti_screenpop_url="", acti_reasoncodes="", acti_agentgroups="")


async def sign_in_agent(page, lab: Lab, extension: str) -> None:
    await page.fill("#username", lab.config.astcti_user)
    await page.fill("#password", lab.config.astcti_password)
    await page.fill("#extension", extension)
    await page.click("#login")
    await page.wait_for_selector("#desk:not([hidden])")


async def sign_in_supervisor(page, lab: Lab) -> None:
    await page.fill("#username", lab.config.supervisor_user)
    await page.fill("#password", lab.config.supervisor_password)
    await page.click("#login")
    await page.wait_for_selector("#board:not([hidden])")


def agent_row(state: str) -> str:
    return f'#agent-table tr[data-agent="agent"][data-state="{state}"]'


async def no_horizontal_scroll(page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = await page.evaluate("window.innerWidth")
    assert width <= viewport, f"page is {width}px wide in a {viewport}px viewport"


async def test_queue_call_answered_held_consulted_transferred_from_the_desktop(
        browser, desk_lab: Lab) -> None:
    lab = desk_lab
    lab.start_phone("101", RINGS_UNTIL_ANSWERED)
    lab.start_phone("102", Phone(answer_after_ms=300))
    board = await browser("/wallboard/")
    await sign_in_supervisor(board, lab)
    desk = await browser("/agent/")
    await sign_in_agent(desk, lab, "101")
    assert "ext 101" in (await desk.text_content("#who") or "")
    await desk.wait_for_selector('#dir-list li[data-extension="102"][data-state="idle"]')

    # join the queues: not ready (acti_loginstate), on the desktop and on the wallboard
    await desk.click("#btn-queues")
    await desk.wait_for_selector('#agent-state[data-state="notready"]')
    await board.wait_for_selector(agent_row("notready"))
    await board.wait_for_selector('article[data-queue="support"]')

    # a customer through the IVR (user data account=4711) waits: the agent is not ready
    customer = lab.call("601", caller=CUSTOMER, talk_ms=120000, name=CUSTOMER_NAME)
    try:
        await board.wait_for_selector(
            'article[data-queue="support"] [data-figure="waiting"] .value:text-is("1")',
            timeout=20000)
        await board.wait_for_selector(  # the name comes from AMI's QueueCallerJoin
            f'article[data-queue="support"] .callers li:has-text("{CUSTOMER_NAME} {CUSTOMER}")')
        await board.screenshot(path=str(DOCS / "wallboard.png"))

        # the desk's tab is in the background: the browser's notification stands in for it
        await desk.evaluate("""() => {
            window.shown = [];
            window.Notification = class { constructor(title, options) {
                window.shown.push(title + ": " + options.body); } };
            window.Notification.permission = "granted";
            Object.defineProperty(document, "hidden", {get: () => true});
        }""")
        # ready: the queue rings 101; the desktop shows the call, its data and the screen pop
        await desk.click("#btn-ready")
        await desk.wait_for_selector('#call-card[data-state="alerting"]', timeout=20000)
        assert await desk.text_content("#caller-name") == CUSTOMER_NAME
        assert await desk.text_content("#caller-number") == CUSTOMER
        assert "support" in (await desk.text_content("#call-via") or "")
        assert "4711" in (await desk.text_content("#userdata") or "")
        assert await desk.is_visible('#actions [data-action="answer"]')
        assert not await desk.is_visible('#actions [data-action="hold"]')
        src = await desk.get_attribute("#pop-frame", "src") or ""
        assert f"phone={CUSTOMER}" in src and "account=4711" in src and "queue=support" in src
        await board.wait_for_selector(agent_row("ringing"))
        assert await desk.evaluate("window.shown") == [
            f"Incoming call: {CUSTOMER_NAME} {CUSTOMER} · support"]
        assert await desk.text_content("#call-announce") == \
            f"Incoming call from {CUSTOMER_NAME}, {CUSTOMER}, queue support"

        await desk.click('#actions [data-action="answer"]')
        await desk.wait_for_selector('#call-card[data-state="connected"]', timeout=20000)
        await board.wait_for_selector(agent_row("oncall"))
        await board.wait_for_selector(
            'article[data-queue="support"] [data-figure="answered"]:text-is("1")')
        await board.wait_for_selector(
            'article[data-queue="support"] [data-figure="waiting"] .value:text-is("0")')
        assert not await desk.is_visible('#actions [data-action="answer"]')
        await desk.screenshot(path=str(DOCS / "agent-desktop.png"))
        await board.screenshot(path=str(DOCS / "wallboard-oncall.png"))

        await desk.click('#actions [data-action="hold"]')
        await desk.wait_for_selector('#call-card[data-state="held"]')
        wait_for(lambda: "Announcer/ARI_MOH" in lab.rx("core show channels"),
                 what="music on hold for the customer")
        await desk.click('#actions [data-action="retrieve"]')
        await desk.wait_for_selector('#call-card[data-state="connected"]')

        # consult 102, picked in the directory (its line turns busy from device states)
        await desk.click('#dir-list li[data-extension="102"] button[data-dir-action="consult"]')
        await desk.wait_for_selector("#other-call:not([hidden])", timeout=20000)
        await desk.wait_for_selector('#call-card[data-state="connected"]', timeout=20000)
        assert await desk.text_content("#caller-number") == "102" or \
            "102" in (await desk.text_content("#caller-name") or "")
        await desk.wait_for_selector('#dir-list li[data-extension="102"][data-state="busy"]')
        for action in ("transfer", "conference", "alternate", "reconnect", "hangup"):
            assert await desk.is_visible(f'#actions [data-action="{action}"]'), action
        assert not await desk.is_visible('#actions [data-action="consult"]')
        await desk.screenshot(path=str(DOCS / "agent-desktop-consultation.png"))

        await desk.click('#actions [data-action="transfer"]')
        await desk.wait_for_selector("#call-empty:not([hidden])", timeout=20000)
        wait_for(lambda: _talking_to_102(lab), what="the customer talking to 102, 101 free")
        await desk.wait_for_selector(
            f'#history tbody tr:has-text("{CUSTOMER}"):has-text("Transferred")')
        await board.wait_for_selector(agent_row("ready"))
        assert await board.text_content(f'{agent_row("ready")} td.num') == "1"  # handled today

        # leave the queues: the wallboard drops the agent
        await desk.click("#btn-queues")
        await desk.wait_for_selector('#agent-state[data-state="off"]')
        await board.wait_for_selector('#agent-table tr[data-agent="agent"]', state="detached")
    finally:
        customer.stop()


def _talking_to_102(lab: Lab) -> bool:
    """102 is bridged with the queue call's leg (the member shim's Local channel, whose other
    half app_queue keeps bridged with the customer) and 101 has no channel left."""
    names = {c["id"]: c["name"].rsplit("-", 1)[0] for c in channels(lab)}
    if any(name == "PJSIP/101" for name in names.values()):
        return False
    members = [{names.get(cid, cid) for cid in b["channels"]} for b in bridges(lab)]
    return any("PJSIP/102" in m and any(n.startswith(("PJSIP/trunk", "Local/101@astcti-agent"))
                                          for n in m) for m in members)


async def test_both_pages_with_the_keyboard_alone_on_a_phone_screen(browser, desk_lab: Lab
                                                                    ) -> None:
    lab = desk_lab
    lab.start_phone("101", RINGS_UNTIL_ANSWERED)  # makecall rings it with auto-answer
    lab.start_phone("102", Phone(answer_after_ms=300))
    board = await browser("/wallboard/", PHONE)
    await board.focus("#username")
    await board.keyboard.type(lab.config.supervisor_user)
    await board.keyboard.press("Tab")
    await board.keyboard.type(lab.config.supervisor_password)
    await board.keyboard.press("Enter")
    await board.wait_for_selector("#board:not([hidden])")

    desk = await browser("/agent/", PHONE)
    await desk.focus("#username")
    for text in (lab.config.astcti_user, lab.config.astcti_password, "101"):
        await desk.keyboard.type(text)
        await desk.keyboard.press("Tab")
    await desk.keyboard.press("Enter")  # the focus is on Sign in
    await desk.wait_for_selector("#desk:not([hidden])")

    await desk.keyboard.press("q")  # join the queues
    await desk.wait_for_selector('#agent-state[data-state="notready"]')
    await board.wait_for_selector(agent_row("notready"))
    await desk.keyboard.press("r")
    await desk.wait_for_selector('#agent-state[data-state="ready"]')
    await board.wait_for_selector(agent_row("ready"))
    await desk.keyboard.press("d")
    assert await desk.evaluate("document.activeElement.id") == "number"
    await desk.keyboard.type("102")
    await desk.keyboard.press("Enter")  # makecall
    await desk.wait_for_selector('#call-card[data-state="connected"]', timeout=30000)
    await board.wait_for_selector(agent_row("oncall"))
    await desk.keyboard.press("Escape")  # leave the number field: single keys act again
    await desk.keyboard.press("h")
    await desk.wait_for_selector('#call-card[data-state="held"]')
    await desk.keyboard.press("h")
    await desk.wait_for_selector('#call-card[data-state="connected"]')
    await no_horizontal_scroll(desk)
    await desk.screenshot(path=str(DOCS / "agent-desktop-phone.png"), full_page=True)
    await desk.keyboard.press("x")
    await desk.wait_for_selector("#call-empty:not([hidden])", timeout=20000)
    await desk.wait_for_selector('#history tbody tr:has-text("102")')

    # not ready: N moves to the reason codes, an arrow picks one, Enter confirms
    await desk.keyboard.press("n")
    assert await desk.evaluate("document.activeElement.id") == "reason"
    await desk.keyboard.press("ArrowDown")  # break -> lunch
    await desk.keyboard.press("Enter")
    await desk.wait_for_selector('#agent-state[data-state="notready"]:has-text("lunch")')
    await board.wait_for_selector(agent_row("notready") + ':has-text("lunch")')
    # after-call work counts down on both pages
    await desk.keyboard.press("w")
    await desk.wait_for_selector('#agent-state[data-state="acw"]')
    await desk.wait_for_selector('#agent-since:has-text("ends in")')
    await board.wait_for_selector(agent_row("acw") + ' td.for:has-text("ACW")')
    await no_horizontal_scroll(board)
    await board.screenshot(path=str(DOCS / "wallboard-phone.png"), full_page=True)

    # the shortcuts sheet opens with ? and closes with Escape
    await desk.keyboard.press("?")
    assert await desk.evaluate("document.getElementById('help').open")
    await desk.keyboard.press("Escape")
    assert not await desk.evaluate("document.getElementById('help').open")
    await desk.keyboard.press("q")
    await desk.wait_for_selector('#agent-state[data-state="off"]')


async def test_the_wallboard_is_for_supervisors(browser, lab: Lab) -> None:
    from tests.admin.conftest import run_shell

    out = run_shell("--socket", lab.config.admin_socket, "-c", "add user wallagent agent 101",
                    stdin="wall-agent-pw\n")
    assert out.returncode == 0, out.stderr
    try:
        page = await browser("/wallboard/")
        await page.fill("#username", "wallagent")
        await page.fill("#password", "wall-agent-pw")
        await page.click("#login")
        await page.wait_for_selector('#login-error:has-text("needs role supervisor")')
        assert await page.is_hidden("#board")
    finally:
        run_shell("--socket", lab.config.admin_socket, "-c", "remove user wallagent")


async def test_pages_ask_to_sign_in_again_when_astcti_restarts(browser, lab: Lab) -> None:
    """Tokens live in the daemon: after a restart both pages say so instead of going blank."""
    desk = await browser("/agent/")
    await sign_in_agent(desk, lab, "101")
    board = await browser("/wallboard/")
    await sign_in_supervisor(board, lab)
    await desk.wait_for_selector('#conn[data-up="true"]')
    lab.stop_astcti()
    lab.start_astcti()
    for page in (desk, board):
        await page.wait_for_selector('#login-error:has-text("sign in again")', timeout=30000)
        assert await page.is_visible("#username")
    # signing in works again once astcti is linked to Asterisk (until then the page says
    # "Asterisk link is down: extension 101 cannot be monitored until it is back")
    for _attempt in range(20):
        await desk.fill("#password", lab.config.astcti_password)
        await desk.click("#login")
        try:
            await desk.wait_for_selector("#desk:not([hidden])", timeout=1500)
            break
        except Exception:  # noqa: BLE001  (playwright's TimeoutError)
            assert "link is down" in (await desk.text_content("#login-error") or ""), \
                await desk.text_content("#login-error")
    assert await desk.is_visible("#desk")


async def test_the_wallboard_counts_a_caller_who_gives_up(browser, lab: Lab) -> None:
    """No agent at all: AMI's queue events alone show the caller waiting, then abandoning (the
    reads of the queue through the ACD service only run while agents are logged in)."""
    force_clean(lab)
    board = await browser("/wallboard/")
    await sign_in_supervisor(board, lab)
    abandoned = 'article[data-queue="support"] [data-figure="abandoned"]'
    await board.wait_for_selector('article[data-queue="support"]')
    before = int(await board.text_content(abandoned) or "0")
    customer = lab.call(lab.config.queue_number, caller="0933333333", talk_ms=60000,
                        name="Carol Gives-Up")
    try:
        await board.wait_for_selector(
            'article[data-queue="support"] .callers li:has-text("Carol Gives-Up 0933333333")',
            timeout=20000)
        assert await board.text_content('article[data-queue="support"] [data-figure="waiting"]'
                                         ' .value') == "1"
        # the caller gives up (the trunk's channel is hung up, as a CANCEL from the caller does)
        for channel in channels(lab):
            if channel["name"].startswith("PJSIP/trunk-"):
                ari(lab, "DELETE", f"channels/{channel['id']}")
        await board.wait_for_selector(f'{abandoned}:text-is("{before + 1}")', timeout=20000)
    finally:
        customer.stop()
    await board.wait_for_selector(
        'article[data-queue="support"] [data-figure="waiting"] .value:text-is("0")')
