"""The operator console in real headless Chromium (Debian's, driven by Playwright) against every service running
natively with a replay of real candles in Semi-Auto: log in, see the real status, halt and resume, approve a
proposal, switch to a riskier profile through the warning dialog, panic with the typed phrase, a viewer who
cannot act, one request per double click, the overview on a phone. A screenshot of each page is kept."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Request, expect, sync_playwright
from quorum.devstack import SERVICES, Stack
from quorum.infra.embedded import EmbeddedNats

from tests.conftest import _wipe_streams
from tests.e2e.test_vertical_slice import wait_for
from tests.support import REPO_ROOT, PgServer, data_file, run_sql

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600),  # the first test also starts the stack and replays
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")]

ADMIN = "e2e-console-admin-token-0123456789"
REPLAY = 64  # Solo RSI's first BUY on this data is the 64th candle: the replay ends on a fresh proposal
PHONE = {"width": 390, "height": 844}
PANIC_PHRASE = "SELL EVERYTHING"


def artifacts() -> Path:
    """Where screenshots go: QUORUM_TEST_ARTIFACTS, else .artifacts/console at the repository root."""
    path = Path(os.environ.get("QUORUM_TEST_ARTIFACTS") or REPO_ROOT / ".artifacts") / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the stack: one per module, in Semi-Auto, with pending proposals from the replay ----------------------------
@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("NATS_URL")
    if external:
        asyncio.run(_wipe_streams(external))
        yield external
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("console-nats")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, migrated_template: str,
          module_nats: str) -> Iterator[Stack]:
    database = pg_server.create(f"quorum_console_{uuid.uuid4().hex[:10]}", template=migrated_template)
    base = tmp_path_factory.mktemp("console-stack")
    s = Stack.with_free_ports(
        base, nats_url=module_nats, database_url=database, log=sys.stderr,
        env={"QUORUM_ENVIRONMENT": "test", "QUORUM_GATEWAY_API_TOKEN": ADMIN,
             "QUORUM_GATEWAY_BACKTEST_REPORT_DIR": str(base / "backtests"),  # not the repository's .quorum
             "QUORUM_OMS_STATE_FILE": str(base / "oms" / "portfolio_state.json"),
             "QUORUM_MARKET_DATA_REPLAY_FILE": str(data_file("ohlcv", "binance_BTCUSDT_1h.csv")),
             "QUORUM_MARKET_DATA_REPLAY_LIMIT": str(REPLAY), "QUORUM_OMS_PROPOSAL_TTL_S": "1800"})
    s.prepare()
    try:
        s.start_services(tuple(n for n in SERVICES if n != "market_data"))
        s.wait_ready(timeout=120)
        with api_client(s, ADMIN) as api:
            for path, body in (("/controls/routing/authorize", {}), ("/controls/operating-mode", {"mode": "SEMI_AUTO"}),
                               ("/controls/council/mode", {"mode": "SOLO", "solo_strategy": "rsi"})):
                answer = api.post(path, json={**body, "reason": "console e2e"})
                assert answer.status_code == 200, answer.text
        s.start_service("market_data")
        wait_for(f"{REPLAY} decisions", lambda: count(s, "SELECT count(*) AS n FROM decisions") == REPLAY)
        wait_for("a pending buy proposal", lambda: count(
            s, "SELECT count(*) AS n FROM trade_proposals WHERE status = 'PENDING' AND side = 'BUY'") >= 1)
        fresh = count(s, "SELECT count(*) AS n FROM trade_proposals p JOIN decisions d USING (decision_id) "
                         "WHERE d.ts = (SELECT max(ts) FROM candles)")
        assert fresh == 1, ("the replay must end on the candle of its first BUY (so the proposal's stop and target "
                            "bracket the last price): set REPLAY to that candle's number")
        yield s
    finally:
        s.stop()


def count(s: Stack, sql: str) -> int:
    assert s.database_url is not None
    return int(run_sql(s.database_url, sql)[0]["n"])


def api_client(s: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url(s), timeout=30, headers={"Authorization": f"Bearer {token}"})


def base_url(s: Stack) -> str:
    return f"http://127.0.0.1:{s.ports['gateway']}"


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with api_client(stack, ADMIN) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(api: httpx.Client) -> dict[str, str]:
    minted = {role: api.post("/admin/tokens", json={"name": f"console-{role}", "role": role}) for role in
              ("operator", "viewer")}
    assert all(r.status_code == 201 for r in minted.values())
    return {role: r.json()["token"] for role, r in minted.items()}


# --- the browser ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    """Started after the stack: Playwright's sync API keeps an event loop running in this thread, and the stack's
    set-up runs its own (``asyncio.run``)."""
    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


def launch(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, headless=True)


@dataclass
class Browsing:
    page: Page
    script_errors: list[str]  # uncaught exceptions in the console's scripts


@pytest.fixture(scope="module")
def operator(browser: Browser, stack: Stack, tokens: dict[str, str]) -> Iterator[Browsing]:
    context = browser.new_context(base_url=base_url(stack), viewport={"width": 1280, "height": 900})
    browsing = Browsing(context.new_page(), [])
    browsing.page.on("pageerror", lambda error: browsing.script_errors.append(str(error)))
    log_in(browsing.page, tokens["operator"], screenshot="login")
    yield browsing
    context.close()


@pytest.fixture
def operator_page(operator: Browsing) -> Page:
    return operator.page


def log_in(page: Page, token: str, screenshot: str | None = None) -> None:
    page.goto("/console/")
    expect(page.locator("#login-token")).to_be_visible()
    if screenshot:
        shot(page, screenshot)
    page.fill("#login-token", token)
    page.click("#login-submit")
    expect(page.locator("#app")).to_be_visible()
    ready(page)


def ready(page: Page) -> None:
    expect(page.locator("#page[data-ready='1']")).to_be_attached()


def go(page: Page, page_id: str) -> None:
    page.goto(f"/console/#/{page_id}")
    expect(page.locator(f"#page[data-page='{page_id}'][data-ready='1']")).to_be_attached()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


def confirm_dialog(page: Page) -> Any:
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    return dialog


def posts_to(page: Page, path: str) -> list[Request]:
    """Every POST the page sends to ``path`` from now on."""
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if r.method == "POST" and r.url.endswith(path) else None)
    return seen


def status(api: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = api.get("/status").json()
    return answer


def until(what: str, check: Callable[[], bool]) -> None:
    wait_for(what, check, timeout=60)


# --- tests -------------------------------------------------------------------------------------------------------
def test_logging_in_shows_the_real_status_and_the_live_stream(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    real = status(api)

    expect(page.locator("#trading-mode")).to_have_text(real["trading_mode"])
    expect(page.locator("#operating-mode")).to_have_text("SEMI_AUTO")
    expect(page.locator("#routing")).to_have_text("CONNECTED")
    expect(page.locator("#risk-profile")).to_have_text(real["risk_profile"])
    expect(page.locator("#services tbody tr")).to_have_count(len(real["services"]))
    expect(page.locator("#stream-state")).to_have_text("live")  # EventSource connected with the cookie
    expect(page.locator("#who")).to_contain_text("operator")
    shot(page, "overview")


def test_halt_then_resume_from_the_overview_shows_in_status(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    page.click("#halt")
    expect(page.locator("#resume")).to_be_visible()
    halted = status(api)
    expect(page.locator("[data-warning='halted']")).to_be_visible()

    page.click("#resume")
    expect(page.locator("#halt")).to_be_visible()
    resumed = status(api)

    assert halted["halted"] is True and resumed["halted"] is False


def test_a_double_click_or_a_repeated_enter_sends_one_request(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    halts = posts_to(page, "/controls/halt")
    resumes = posts_to(page, "/controls/resume")

    page.dblclick("#halt")
    expect(page.locator("#resume")).to_be_visible()
    page.focus("#resume")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(page.locator("#halt")).to_be_visible()
    page.wait_for_timeout(500)  # anything a second click had sent would be out by now

    assert len(halts) == 1 and len(resumes) == 1
    assert status(api)["halted"] is False


def test_a_change_made_elsewhere_reaches_the_page_through_the_stream(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    assert api.post("/controls/kill-switch/engage", json={"reason": "from curl"}).status_code == 200
    expect(page.locator("[data-warning='kill']")).to_be_visible()
    assert api.post("/controls/kill-switch/release", json={"reason": "from curl"}).status_code == 200
    expect(page.locator("[data-warning='kill']")).to_have_count(0)


def test_approving_a_semi_auto_proposal_opens_the_position(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    go(page, "decisions")
    first = page.locator("#proposals tbody tr").first
    expect(first.locator(".time-left")).to_contain_text("m")  # minutes left of the 30 the stack gives
    symbol = first.locator("td").nth(1).inner_text()
    shot(page, "decisions")

    first.get_by_role("button", name="Approve").click()
    until("the approved proposal's position", lambda: any(
        p["symbol"] == symbol and Decimal(p["quantity"]) > 0 for p in api.get("/positions").json()))
    decided = api.get("/proposals", params={"status": "APPROVED"}).json()["items"]

    assert [p["decided_by"] for p in decided] == [f"USER:{operator_id(api)}"]


def operator_id(api: httpx.Client) -> str:
    return next(t["token_id"] for t in api.get("/admin/tokens").json() if t["name"] == "console-operator")


def test_switching_to_a_riskier_profile_goes_through_the_servers_warning(operator_page: Page,
                                                                         api: httpx.Client) -> None:
    page = operator_page
    go(page, "risk")
    shot(page, "risk")
    page.click("#profile-HIGH")
    dialog = confirm_dialog(page)
    expect(dialog.locator("#confirm-warning")).to_contain_text(
        "Raising the risk profile from MEDIUM to HIGH allows larger positions")
    dialog.locator("#confirm-ok").click()
    expect(page.locator("#active-profile")).to_have_text("HIGH")

    assert api.get("/risk").json()["risk_profile"] == "HIGH"


def test_panic_needs_the_typed_phrase_and_closes_every_position(operator_page: Page, api: httpx.Client) -> None:
    page = operator_page
    go(page, "overview")
    page.click("#panic")
    dialog = confirm_dialog(page)
    expect(dialog.locator("#confirm-phrase-text")).to_have_text(PANIC_PHRASE)  # read from the server's warning
    expect(dialog.locator("#confirm-ok")).to_be_disabled()
    dialog.locator("#confirm-phrase").fill("SELL EVERYTHIN")
    expect(dialog.locator("#confirm-ok")).to_be_disabled()
    dialog.locator("#confirm-phrase").fill(PANIC_PHRASE)
    panics = posts_to(page, "/controls/panic")
    dialog.locator("#confirm-ok").dblclick()
    expect(dialog).to_be_hidden()
    assert len(panics) == 1  # the confirmation, once

    until("every position closed", lambda: api.get("/positions").json() == [])
    expect(page.locator("#resume")).to_be_visible()
    assert status(api)["halted"] is True


def test_a_viewer_sees_every_control_disabled_and_cannot_act(browser: Browser, stack: Stack,
                                                             tokens: dict[str, str]) -> None:
    context = browser.new_context(base_url=base_url(stack))
    page = context.new_page()
    log_in(page, tokens["viewer"])
    buttons = page.locator("#page button[data-action]")
    expect(buttons.first).to_be_visible()
    enabled = [b.get_attribute("data-action") for b in buttons.all() if b.is_enabled()]
    forced = page.evaluate("""async () => {
        const session = await (await fetch('/console/session')).json();
        const r = await fetch('/controls/resume', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': session.csrf_token}, body: '{}'});
        return [r.status, (await r.json()).detail];
    }""")
    shot(page, "overview-viewer")
    context.close()

    assert enabled == []
    assert forced[0] == 403 and "viewer" in forced[1]


def test_the_overview_and_its_halt_and_panic_work_on_a_phone(browser: Browser, stack: Stack, tokens: dict[str, str],
                                                             api: httpx.Client) -> None:
    context = browser.new_context(base_url=base_url(stack), viewport=PHONE, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    page = context.new_page()
    log_in(page, tokens["operator"])
    resume, panic = page.locator("#resume"), page.locator("#panic")  # the panic above left trading halted
    expect(resume).to_be_in_viewport()
    expect(panic).to_be_in_viewport()
    too_wide = page.evaluate("document.documentElement.scrollWidth") > PHONE["width"]
    shot(page, "overview-phone")
    resume.tap()
    expect(page.locator("#halt")).to_be_in_viewport()
    context.close()

    assert not too_wide
    assert status(api)["halted"] is False


@pytest.mark.parametrize("page_id", ["portfolio", "strategy", "audit", "admin"])
def test_every_other_page_renders_without_an_error(operator: Browsing, page_id: str) -> None:
    page = operator.page
    go(page, page_id)
    shot(page, page_id if page_id != "admin" else "admin-as-operator")
    errors = page.locator("#page .error").all_inner_texts()

    assert [e for e in errors if e.strip()] == []
    assert operator.script_errors == []


def test_the_portfolio_charts_equity_drawdown_and_the_assets_fills(operator_page: Page) -> None:
    page = operator_page
    go(page, "portfolio")

    expect(page.locator("svg.chart")).to_have_count(3)  # equity, drawdown, the asset's candles
    expect(page.locator("svg.chart .fill-mark")).to_have_count(2)  # the approved buy and the panic's sell
    expect(page.locator("#balances tbody tr").first).to_be_visible()


def test_the_audit_trail_filters_verifies_its_chain_and_exports(operator_page: Page, tmp_path: Path) -> None:
    page = operator_page
    go(page, "audit")
    page.fill("input[name='action']", "panic")
    actions = page.locator("#audit-rows tbody tr td:nth-child(4)").all_inner_texts()
    page.click("#audit-verify")
    expect(page.locator("#audit-verdict")).to_contain_text("chain OK")
    with page.expect_download() as download:
        page.click("#export-csv")
    exported = tmp_path / "audit.csv"
    download.value.save_as(exported)

    assert actions and all("panic" in a for a in actions)
    assert exported.read_text().splitlines()[0].startswith("id,event_id,ts,actor,action")


def test_a_backtest_started_from_the_console_finishes_with_its_report(operator_page: Page) -> None:
    page = operator_page
    go(page, "strategy")
    page.click("button:has-text('Start backtest')")
    row = page.locator("#backtests tbody tr").first
    expect(row).to_be_visible()
    for _ in range(60):  # backtests publish no progress on the stream: the page's Refresh button asks
        if row.locator("td").nth(3).inner_text() in ("DONE", "FAILED"):
            break
        page.click("button:has-text('Refresh')")
        page.wait_for_timeout(1000)
    status_text = row.locator("td").nth(3).inner_text()
    row.get_by_role("button", name="Report").click()
    expect(page.locator("#backtest-report")).to_contain_text("Metrics")
    shot(page, "strategy-backtest")
    with page.context.expect_page() as opened:
        page.click("#backtest-report-link")
    report = opened.value
    report.wait_for_load_state()

    assert status_text == "DONE"
    assert report.url.endswith("/report/") and "Sharpe" in report.content()
    report.close()


def test_an_admin_mints_a_token_that_is_shown_once(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(base_url=base_url(stack))
    page = context.new_page()
    log_in(page, ADMIN)
    go(page, "admin")
    page.fill("input[name='name']", "wall-screen")
    page.select_option("select[name='role']", "viewer")
    page.click("button:has-text('Mint token')")
    minted = page.locator("#new-token code")
    expect(minted).to_have_text(re.compile(r"^qk_"))
    expect(page.locator("#tokens")).to_contain_text("wall-screen")
    shot(page, "admin")
    go(page, "overview")
    go(page, "admin")
    shown_again = page.locator("#new-token code").count()
    context.close()

    assert shown_again == 0
