"""The console's route allow-list (issue 29): every route the app serves is listed here and
classified, so a new route fails these tests until someone decides who may reach it.

The threats: a page that answers without a session (MOVEit's and GoAnywhere's way in was a
web page that needed no login), and a web page that creates, resets or enables an account
(GoAnywhere CVE-2024-0204: a path traversal to the setup page let anyone create an admin).
The console's accounts are made, reset and disabled by ``gateway users`` on the host only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from starlette.routing import Mount, Route

import gateway.console
from tests.integration.test_console import Clock, Server
from tests.unit.test_console_app import Http, make_site

CONSOLE = Path(gateway.console.__file__).resolve().parent

# Every route of gateway/console/app.py: (path, methods, handler) -> who may reach it.
# "public": answers without a session (the login page only); "session": a signed-in person.
# Starlette adds HEAD wherever GET is.
KNOWN: dict[tuple[str, frozenset[str], str], str] = {
    ("/login", frozenset({"GET", "HEAD"}), "login_form"): "public",
    ("/login", frozenset({"POST"}), "login"): "public",
    ("/logout", frozenset({"POST"}), "logout"): "session",
    ("/", frozenset({"GET", "HEAD"}), "overview"): "session",
    ("/audit", frozenset({"GET", "HEAD"}), "audit_page"): "session",
    ("/audit/export.{fmt:str}", frozenset({"GET", "HEAD"}), "audit_export"): "session",
    ("/audit/verify", frozenset({"GET", "HEAD"}), "audit_verify"): "session",
    ("/access", frozenset({"GET", "HEAD"}), "access_page"): "session",
    ("/retention", frozenset({"GET", "HEAD"}), "retention_page"): "session",
    ("/retention/certificates/{name:str}", frozenset({"GET", "HEAD"}), "certificate"): "session",
    ("/keys", frozenset({"GET", "HEAD"}), "keys_page"): "session",
    ("/alerts", frozenset({"GET", "HEAD"}), "alerts_page"): "session",
    ("/compliance", frozenset({"GET", "HEAD"}), "compliance_page"): "session",
    ("/compliance/reports/report.{agency:str}.{month:str}.html", frozenset({"GET", "HEAD"}),
     "report_page"): "session",
    ("/unmask", frozenset({"GET", "HEAD"}), "unmask_page"): "session",
    # a decision: approver accounts only (the handler refuses the others), CSRF and a fresh
    # TOTP code (tests/unit/test_console_unmask.py)
    ("/unmask/decide", frozenset({"POST"}), "unmask_decision"): "session",
    ("/unmask/register", frozenset({"GET", "HEAD"}), "register_page"): "session",
    ("/unmask/register.csv", frozenset({"GET", "HEAD"}), "register_export"): "session",
}
STATIC = "/static"  # the only mount: StaticFiles over gateway/console/static, public

# Words of account management (GoAnywhere's setup page); a route or handler named with one
# of them fails unless listed below with the reason it is not account management.
ACCOUNT_WORDS = re.compile(r"account|user|reset|enable|add|create|password|enrol|totp|setup|admin",
                           re.IGNORECASE)
NOT_ACCOUNT_MANAGEMENT: dict[str, str] = {
    # (none today: the login form takes a password but changes nothing about an account)
}


@pytest.fixture(scope="module")
def app_and_client(tmp_path_factory):
    cfg = make_site(tmp_path_factory.mktemp("routes") / "gw")
    server = Server(cfg, Clock())
    yield server.app, Http(server.port)
    server.stop()


def _routes(app) -> tuple[dict[tuple[str, frozenset[str], str], Route], list[Mount]]:
    routes: dict[tuple[str, frozenset[str], str], Route] = {}
    mounts: list[Mount] = []
    for r in app.routes:
        if isinstance(r, Mount):
            mounts.append(r)
        else:
            assert isinstance(r, Route), f"{r!r}: neither a Route nor a Mount — classify it here"
            routes[(r.path, frozenset(r.methods or ()), r.endpoint.__name__)] = r
    return routes, mounts


def _sample(path: str) -> str:
    """A concrete URL for a route's path: each parameter becomes a plain word."""
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: {"fmt": "csv", "month": "2026-01"}.get(
        m.group(1), "AG001"), path)


def test_every_console_route_is_known_and_classified(app_and_client):
    """A route nobody classified (a debug page, a setup page, an upload) fails here: add it
    to KNOWN, as public only if it must answer without a session."""
    app, _ = app_and_client
    routes, mounts = _routes(app)
    assert set(routes) == set(KNOWN), (
        f"new: {sorted(set(routes) - set(KNOWN))}; gone: {sorted(set(KNOWN) - set(routes))}")
    assert [m.path for m in mounts] == [STATIC]
    # the mount serves files from the package's static directory, and nothing else
    assert Path(mounts[0].app.directory).resolve() == CONSOLE / "static"


def test_only_the_login_page_and_static_files_answer_without_a_session(app_and_client):
    """Every route and method, asked with no cookie at all: the session routes send the
    person to log in (303 to /login) — none renders, exports or changes anything."""
    app, client = app_and_client
    routes, _ = _routes(app)
    asked = 0
    for (path, methods, name), _route in routes.items():
        for method in sorted(methods):
            client.cookies.clear()
            status, headers, body = client.request(method, _sample(path),
                                                   body="" if method == "POST" else None)
            asked += 1
            if KNOWN[(path, methods, name)] == "public":
                # the login form (200), or its POST refused for want of the form's token (403)
                assert status in (200, 403), (method, path, status, body[:200])
                continue
            assert status == 303, (method, path, status, body[:200])
            assert headers["Location"].startswith("/login"), (method, path, headers["Location"])
            assert method == "HEAD" or b"<table" not in body
    assert asked == sum(len(methods) for _path, methods, _name in routes)  # every method asked
    for f in sorted((CONSOLE / "static").iterdir()):  # the assets: public, as they are
        client.cookies.clear()
        status, _, body = client.request("GET", f"{STATIC}/{f.name}")
        assert status == 200 and body == f.read_bytes(), f.name


def test_a_path_no_route_knows_is_not_found_without_a_session(app_and_client):
    """Nothing answers outside the list: a setup or admin page (GoAnywhere's
    ``InitialAccountSetup.xhtml``), a traversal out of /static, a web shell's name
    (MOVEit's ``human2.aspx``) are 404 — never a page."""
    _, client = app_and_client
    for target in ("/setup", "/admin", "/users", "/accounts/new", "/static/../app.py",
                   "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/human2.aspx",
                   "/wizard/InitialAccountSetup.xhtml"):
        client.cookies.clear()
        status, _, body = client.request("GET", target)
        assert status == 404, (target, status, body[:200])
        assert b"import " not in body


def test_no_console_route_creates_resets_or_enables_an_account(app_and_client):
    """Account management stays on the host (``gateway users``): no route's path or handler
    speaks of accounts, users, passwords or enrolment (but for the listed exceptions)."""
    app, _ = app_and_client
    routes, _ = _routes(app)
    for path, _methods, name in routes:
        if path in ("/login", "/logout"):
            continue  # a session's own start and end; checked below not to manage accounts
        for text in (path, name):
            if ACCOUNT_WORDS.search(text) and text not in NOT_ACCOUNT_MANAGEMENT:
                pytest.fail(f"{path} ({name}): looks like account management, which stays "
                            "CLI-only (gateway users); list it in NOT_ACCOUNT_MANAGEMENT with "
                            "the reason if it is not")


MANAGING = {"add", "reset", "disable", "enable", "add_account", "change_account"}


def test_the_console_code_never_calls_account_management():
    """Below the routes: no module the console serves from calls ``Accounts.add``/``reset``/
    ``disable`` or the ledger's ``add_account``/``change_account`` (the ones ``gateway
    users`` uses); only :mod:`gateway.console.auth`, which defines them, and the CLI may."""
    found = []
    for source in sorted(CONSOLE.glob("*.py")):
        if source.name == "auth.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in MANAGING and \
                    re.search(r"account|ledger", ast.unparse(node.func.value), re.IGNORECASE):
                found.append(f"{source.name}:{node.lineno}: {ast.unparse(node.func)}")
    assert not found, found
