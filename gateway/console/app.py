"""The console's routes (docs/security-team.md): thin — a page asks ``gateway.queries`` or ``audit`` and
renders a template; what a person may see and do is decided in :mod:`console.auth`.

Every response carries a strict Content-Security-Policy (``default-src 'self'``, no
inline script or style), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``;
every asset is served from ``static/``. Every form carries the session's CSRF token
(the login form a token of its own, bound to a short-lived signed cookie). Every
page of records a person views and every export is audited with their account.

Every route does its work on Starlette's worker threads, not on the event loop: a page
reads the ledger, appends to the audit log (an exclusive ``flock`` and an ``fsync``,
waiting as long as the daemon holds the lock) and may run gpg, and on the loop any one
of them stalled every other request, the login page and the stylesheet included (issue
23). So a page is a plain ``def`` (Starlette runs it in its threadpool), the session
check with it (it reads the accounts table); a route that must read a form awaits the
form on the loop and hands the rest to :func:`run_in_threadpool`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import heapq
import ipaddress
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway import audit, queries
from gateway.config import Config
from gateway.console import export, proxy, startup
from gateway.console.auth import Accounts, Session, Signer, same_token
from gateway.errors import ConfigError, GatewayError
from gateway.ledger import AccountRow, utcnow
from gateway.reports.figures import check_month, figures, recent_months
from gateway.reports.render import as_html
from gateway.retention import policy
from gateway.unmask import register as unmask_register

log = structlog.get_logger("gateway.console")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "gw_session"
LOGIN_COOKIE = "gw_login"  # the login form's CSRF token
LOGIN_FORM_SECONDS = 600
PAGE_SIZE = 50
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
FILTERS = ("event", "agency", "actor", "file", "batch_id", "since", "until")


class Console:
    """What the routes share: the config, the ledger, the audit log, accounts, signer.

    Safe to share between threads: the ledger opens a session (a connection of its
    pool) per call, the audit log a descriptor per append, and the audit index takes
    one call at a time (:class:`~gateway.audit_index.AuditIndex`)."""

    def __init__(self, cfg: Config, *, now: Callable[[], dt.datetime] = utcnow,
                 signer: Signer | None = None) -> None:
        self.cfg = cfg
        self.now = now
        self.ledger = startup.open_ledger(cfg)
        self.log = audit.AuditLog(cfg.gateway.state_dir / "audit", actor="console")
        try:
            self.index = startup.open_index(cfg, self.log.path)
        except GatewayError:
            self.ledger.close()
            raise
        self.index.refresh()  # the first time: the whole log (~50 s for a million entries)
        self.accounts = Accounts(self.ledger, self.log, now=now)
        self.signer = signer or Signer()
        # certificate -> (size, mtime) when its signature last checked out: a page view
        # does not start gpg again for a file that has not changed (two threads that
        # check one file at once both run gpg and store the same stamp)
        self.certificates_valid: dict[str, tuple[int, int]] = {}
        self.secure = cfg.console.tls_cert is not None
        self.templates = Jinja2Templates(env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
        self.templates.env.filters["local"] = self.local

    def local(self, value: dt.datetime | str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """A time in the gateway's zone (what the bank's staff read)."""
        if value is None:
            return "—"
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(self.cfg.gateway.tz).strftime(fmt)

    def entries(self, flt: audit.Filter) -> Iterator[dict[str, Any]]:
        """Entries matching *flt* in log order, through the index (brought up to date)."""
        self.index.refresh()
        return self.index.entries(flt)

    def close(self) -> None:
        self.index.close()
        self.ledger.close()


def create_app(cfg: Config, **kwargs: Any) -> Starlette:
    """The console's app; refuses (ConfigError) a TLS key others may read, and warns (the
    log) of a console that would take passwords over the network in clear — before any
    database is opened, as `gateway check` says it."""
    if (problem := startup.tls_key_problem(cfg.console)) is not None:
        raise ConfigError(problem, source=str(cfg.source))
    if (warning := startup.cleartext_warning(cfg.console)) is not None:
        log.warning("console.cleartext", key="console.listen", problem=warning)
    from gateway.console import unmask as unmask_pages  # its pages use this module's helpers

    console = Console(cfg, **kwargs)

    async def headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/audit", audit_page),
        Route("/audit/export.{fmt:str}", audit_export),
        Route("/audit/verify", audit_verify),
        Route("/access", access_page),
        Route("/retention", retention_page),
        Route("/retention/certificates/{name:str}", certificate),
        Route("/keys", keys_page),
        Route("/alerts", alerts_page),
        Route("/compliance", compliance_page),
        Route("/compliance/reports/report.{agency:str}.{month:str}.html", report_page),
        *unmask_pages.ROUTES,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # the index's lock may be held by an export still on a worker thread
            await run_in_threadpool(console.close)

    # the headers outermost: a refused Host's 400 carries them too
    app = Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=headers),
                                               *proxy.middleware(cfg.console)],
                    lifespan=lifespan)
    app.state.console = console
    return app


# --- sessions ----------------------------------------------------------------------------

def _console(request: Request) -> Console:
    console: Console = request.app.state.console  # Starlette's app state holds Any
    return console


def _address(request: Request) -> str | None:
    """The client's IP address for the audit log (the proxy's X-Forwarded-For, when it
    is trusted, may hold anything: what is not an address is not written down)."""
    try:
        ip = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return None
    return str(ip).partition("%")[0]  # an IPv6 zone (fe80::1%eth0) names our interface


def _secure(c: Console, request: Request) -> bool:
    """Cookies only over HTTPS: the console's own TLS, or the trusted proxy's (whose
    X-Forwarded-Proto made the request's scheme https)."""
    return c.secure or request.url.scheme == "https"


def signed_in(handler: Callable[[Console, Request, Session, AccountRow], Response]
              ) -> Callable[[Request], Response]:
    """A page for a signed-in person: the handler gets the console, the request, the session
    and its account; anyone else is sent to log in. A plain function, so that Starlette
    runs the session check (the accounts table) and the page on a worker thread."""
    @functools.wraps(handler)
    def endpoint(request: Request) -> Response:
        c = _console(request)
        signed = _signed_in(c, request)
        if isinstance(signed, Response):
            return signed
        return handler(c, request, *signed)

    return endpoint


def _signed_in(c: Console, request: Request) -> tuple[Session, AccountRow] | Response:
    """The session and its account, or the response that sends the person to log in."""
    session, why = c.signer.read(request.cookies.get(SESSION_COOKIE), c.now())
    row = c.accounts.holder(session) if session else None
    if session is None or row is None:
        target = "/login?" + urllib.parse.urlencode({"ended": "1"} if why == "expired" or (
            session and row is None) else {})
        response = RedirectResponse(target.rstrip("?"), status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(c, request), httponly=True,
                               samesite="strict")
        return response
    return session, row


def _render(c: Console, request: Request, template: str, session: Session | None,
            status: int = 200, **context: Any) -> HTMLResponse:
    response = c.templates.TemplateResponse(
        request, template, {"session": session, "cfg": c.cfg, "now": c.now(), **context},
        status_code=status)
    if session is not None:  # the idle timeout starts again
        _set_session(c, request, response, c.signer.cookie(session))
    return response


def _set_session(c: Console, request: Request, response: Response, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, httponly=True, secure=_secure(c, request),
                        samesite="strict", path="/")


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=20, max_part_size=4096)


def login_form(request: Request) -> Response:
    return _login_page(_console(request), request, failed=False)


def _login_page(c: Console, request: Request, *, failed: bool) -> Response:
    token = c.signer.sign({"t": c.now().timestamp()})
    response = _render(c, request, "login.html", None, status=401 if failed else 200,
                       token=token, failed=failed, ended=request.query_params.get("ended") == "1")
    response.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_FORM_SECONDS, httponly=True,
                        secure=_secure(c, request), samesite="strict", path="/login")
    return response


async def login(request: Request) -> Response:
    """The form is read on the event loop; checking it (Argon2, the accounts table, the
    audit log) on a worker thread."""
    form = await _form(request)
    return await run_in_threadpool(_login, _console(request), request, form)


def _login(c: Console, request: Request, form: FormData) -> Response:
    token = form.get("csrf")
    issued = c.signer.unsign(str(token or ""))
    if not same_token(str(token or ""), request.cookies.get(LOGIN_COOKIE)) or issued is None or \
            c.now().timestamp() - float(issued.get("t", 0)) > LOGIN_FORM_SECONDS:
        return Response("The login form has expired or did not come from this console: "
                        "reload the page and try again.", status_code=403)
    result = c.accounts.login(str(form.get("name", "")), str(form.get("password", "")),
                              str(form.get("code", "")).strip(), address=_address(request))
    if not result.ok or result.account is None:
        return _login_page(c, request, failed=True)
    value, _ = c.signer.session(result.account.name, c.now())
    response = RedirectResponse("/", status_code=303)
    _set_session(c, request, response, value)
    response.delete_cookie(LOGIN_COOKIE, path="/login", secure=_secure(c, request),
                           httponly=True, samesite="strict")
    return response


def signed_form(handler: Callable[[Console, Request, Session, AccountRow, FormData], Response]
                ) -> Callable[[Request], Awaitable[Response]]:
    """A route that takes a form from a signed-in account: as a :func:`signed_in` page, but
    with the form read on the event loop between the session check and *handler*, each
    of which runs on a worker thread; a form without the session's CSRF token is refused."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        c = _console(request)
        signed = await run_in_threadpool(_signed_in, c, request)
        if isinstance(signed, Response):
            return signed
        session, row = signed
        form = await _form(request)
        if not same_token(str(form.get("csrf", "")), session.csrf):
            return Response("Missing or wrong CSRF token.", status_code=403)
        return await run_in_threadpool(handler, c, request, session, row, form)
    return endpoint


@signed_form
def logout(c: Console, request: Request, _session: Session, row: AccountRow,
           _posted: FormData) -> Response:
    c.accounts.logout(row.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(c, request), httponly=True,
                           samesite="strict")
    return response


# --- pages -------------------------------------------------------------------------------

@signed_in
def overview(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    now = c.now()
    zones, in_hand = queries.zone_health(c.cfg, c.ledger)
    today = now.astimezone(c.cfg.gateway.tz).date()
    contracts = [d for d in policy.contracts(c.cfg, c.ledger, today)
                 if d.state.value in ("ended", "purge_due") and d.days_left <= 7]
    # the agencies' own evidence that needs a person: attestations missing, files overdue
    evidence = [e for e in queries.agency_evidence(c.cfg, c.ledger, now)
                if e.state == "missing" or e.overdue]
    week_ago = now - dt.timedelta(days=7)
    waiting = len(unmask_register.pending(c.ledger, now))
    c.index.refresh()
    security = c.index.page(audit.Filter(event="security.", since=week_ago), size=20)
    c.log.record("console.view", account=row.name, page="overview")
    return _render(c, request, "overview.html", session, account=row, zones=zones, active="overview",
                   in_hand=in_hand, contracts=contracts, evidence=evidence,
                   security=security.entries,
                   security_total=security.matching, chain=c.index.state(),
                   security_since=c.local(week_ago, "%Y-%m-%dT%H:%M"), waiting=waiting)


def _filter(c: Console, request: Request) -> tuple[audit.Filter, dict[str, str], list[str]]:
    """The audit filter from the query string; local times in the gateway's zone."""
    values = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    problems = []
    times: dict[str, dt.datetime | None] = {"since": None, "until": None}
    for key in times:
        if values[key]:
            try:
                t = dt.datetime.fromisoformat(values[key])
            except ValueError:
                problems.append(f"{key}: {values[key]!r} is not a date or date-time")
                continue
            times[key] = t if t.tzinfo else t.replace(tzinfo=c.cfg.gateway.tz)
    flt = audit.Filter(event=values["event"] or None, agency=values["agency"] or None,
                       actor=values["actor"] or None, file=values["file"] or None,
                       batch_id=values["batch_id"] or None, since=times["since"],
                       until=times["until"])
    return flt, values, problems


@signed_in
def audit_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    flt, values, problems = _filter(c, request)
    before = _before(request.query_params.get("before"))
    if isinstance(before, Response):
        return before
    chain = c.index.refresh()
    result = c.index.page(flt, before=before, size=PAGE_SIZE)
    c.log.record("console.view", account=row.name, page="audit", count=len(result.entries))
    query = urllib.parse.urlencode({k: v for k, v in values.items() if v})
    return _render(c, request, "audit.html", session, account=row, page=result, values=values,
                   active="audit", chain=chain,
                   problems=problems, query=query, events=sorted(audit.EVENTS),
                   agencies=[a.code for a in c.cfg.agencies])


MAX_SEQ = 2**63 - 1  # SQLite's INTEGER: a larger number raised OverflowError (a 500)


def _before(raw: str | None) -> int | Response | None:
    """The page's ``before`` (an entry's seq, as the "Older entries" link writes it), or
    the 400 for anything else."""
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", raw.strip()) or not 0 < int(raw) <= MAX_SEQ:
        return Response(f"before: must be an entry's number (1 to {MAX_SEQ}).", status_code=400)
    return int(raw)


@signed_in
def audit_export(c: Console, request: Request, _session: Session, row: AccountRow) -> Response:
    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "jsonl"):
        return Response("Export as .csv or .jsonl.", status_code=404)
    flt, _values, problems = _filter(c, request)
    if problems:
        return Response("; ".join(problems), status_code=400)
    c.log.record("console.export", account=row.name, page="audit", format=fmt)
    stamp = c.now().astimezone(c.cfg.gateway.tz).strftime("%Y%m%dT%H%M%S")

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    # A plain iterator: Starlette reads it on a worker thread, so a long export of the log
    # (file reads, index queries) never holds up the other pages.
    return StreamingResponse(export.lines(c.entries(flt), fmt), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"'})


@signed_in
def audit_verify(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    report, why_not = _checkpoints(c)
    result = report.chain if report else audit.verify(c.log.path)
    c.log.record("console.view", account=row.name, page="audit_verify")
    return _render(c, request, "verify.html", session, account=row, result=result, active="audit",
                   report=report, why_not=why_not, path=str(c.log.path))


def _checkpoints(c: Console) -> tuple[Any, str]:
    """The chain and the signed checkpoints, checked with the gateway's public keys only
    (as `gateway audit verify --key`); or None and why they could not be."""
    from gateway import checkpoint
    from gateway.crypto.signed import signature_checker
    from gateway.state import runner_active

    folder = checkpoint.directory(c.cfg.gateway.state_dir)
    if not c.cfg.console.gateway_public_keys:
        return None, "set [console] gateway_public_keys to check the signed checkpoints"
    if not folder.is_dir():
        return None, "the gateway has not sealed a checkpoint yet"
    try:
        with signature_checker(c.cfg.console.gateway_public_keys) as opened:
            return checkpoint.check(c.log.path, folder, opened,
                                    writer_running=runner_active(c.cfg.gateway.state_dir)), ""
    except GatewayError as exc:
        return None, f"the checkpoints could not be checked: {exc}"


@signed_in
def access_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    roles = queries.access(c.cfg, c.ledger)
    seen = queries.logins(queries.reads(heapq.merge(
        c.entries(audit.Filter(event="slice.accessed")), c.entries(audit.Filter(event="security.")),
        key=lambda e: e["seq"])))
    stale = c.now() - dt.timedelta(days=c.cfg.console.stale_days)
    timelines = queries.batch_timelines(c.ledger)
    c.log.record("console.view", account=row.name, page="access", count=len(timelines))
    return _render(c, request, "access.html", session, account=row, roles=roles, stale=stale,
                   seen=seen, evidence=c.cfg.access.sshd_log is not None,
                   timelines=timelines, active="access")


def _certificate_checks(c: Console, names: list[str]) -> dict[str, str]:
    """Each certificate file's verdict, checked with the gateway's public keys only."""
    from gateway.crypto.signed import signature_checker
    from gateway.errors import CryptoError

    folder = c.cfg.gateway.shared / "certificates"
    verdicts: dict[str, str] = {}
    if not c.cfg.console.gateway_public_keys:
        return dict.fromkeys(names, "not checked: set [console] gateway_public_keys")
    todo = []
    for name in names:  # a file checked before and unchanged since keeps its verdict
        stamp = _stamp(folder / name)
        if stamp is not None and c.certificates_valid.get(name) == stamp:
            verdicts[name] = VALID
        else:
            todo.append(name)
    if not todo:
        return verdicts
    try:
        with signature_checker(c.cfg.console.gateway_public_keys) as opened:
            for name in todo:
                try:
                    stamp = _stamp(folder / name)
                    opened((folder / name).read_bytes())
                    verdicts[name] = VALID
                    if stamp is not None:
                        c.certificates_valid[name] = stamp
                except OSError as exc:
                    verdicts[name] = f"cannot read the file: {exc.strerror}"
                except CryptoError as exc:
                    verdicts[name] = f"INVALID: {exc}"
    except GatewayError as exc:
        return verdicts | dict.fromkeys(todo, f"not checked: {exc}")
    return verdicts


VALID = "valid signature of the gateway"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@signed_in
def retention_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    today = c.now().astimezone(c.cfg.gateway.tz).date()
    held = queries.held(c.cfg, c.ledger, today)
    evidence = {e.agency: e for e in queries.agency_evidence(c.cfg, c.ledger, c.now())}
    checks = _certificate_checks(c, [h.certificate for h in held if h.certificate])
    c.log.record("console.view", account=row.name, page="retention", count=len(held))
    return _render(c, request, "retention.html", session, account=row, held=held, checks=checks,
                   evidence=evidence, active="retention")


@signed_in
def certificate(c: Console, request: Request, _session: Session, row: AccountRow) -> Response:
    """A deletion certificate as the gateway signed it (only names the ledger knows)."""
    name = request.path_params["name"]
    known = {p.certificate for a in c.cfg.agencies if (p := c.ledger.purge(a.contract.id))}
    if name not in known:
        return Response("No such certificate.", status_code=404)
    try:
        data = (c.cfg.gateway.shared / "certificates" / name).read_bytes()
    except OSError as exc:
        return Response(f"The certificate cannot be read: {exc.strerror}.", status_code=500)
    c.log.record("console.export", account=row.name, page="retention", format="asc", file=name)
    return Response(data, media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@signed_in
def keys_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    views = queries.key_views(c.cfg)
    c.index.refresh()
    refused = c.index.page(audit.Filter(event="key.refused"), size=20).entries
    c.log.record("console.view", account=row.name, page="keys", count=len(views))
    soon = c.now() + dt.timedelta(days=30)
    return _render(c, request, "keys.html", session, account=row, views=views, refused=refused,
                   soon=soon, active="keys")


@signed_in
def alerts_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    """Open alerts, then the recently cleared ones, with what was sent for each by channel
    (counts only: the read model holds no address)."""
    from gateway.alerts.views import alert_views

    views = alert_views(c.ledger, limit=200)
    c.log.record("console.view", account=row.name, page="alerts", count=len(views))
    return _render(c, request, "alerts.html", session, account=row, active="alerts",
                   configured=c.cfg.alerts is not None,
                   open=[v for v in views if v.state == "open"],
                   cleared=[v for v in views if v.state != "open"])


@signed_in
def compliance_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    from gateway.console.charts import stacked_bars

    today = c.now().astimezone(c.cfg.gateway.tz).date()
    try:
        days_back = min(max(int(request.query_params.get("days", "30")), 1), 366)
    except ValueError:
        days_back = 30
    since = today - dt.timedelta(days=days_back - 1)
    days = queries.compliance(c.cfg, c.ledger, c.entries, since)
    labels = [(since + dt.timedelta(days=i)).isoformat() for i in range(days_back)]
    series: dict[str, list[int]] = {f: [0] * days_back for f in (*queries.FLAG_NAMES, "NOT_ASSIGNED")}
    for d in days:
        i = (d.day - since).days
        for f, n in d.flags.items():
            series[f][i] += n
        series["NOT_ASSIGNED"][i] += d.not_assigned
    chart = stacked_bars(labels, series, title=f"Flags and E_NOT_ASSIGNED per day, last {days_back} days")
    c.log.record("console.view", account=row.name, page="compliance", count=len(days))
    months = recent_months(today, 3)
    return _render(c, request, "compliance.html", session, account=row, days=days, chart=chart,
                   flags=queries.FLAG_NAMES, days_back=days_back, active="compliance",
                   months=months)


def _reportable(c: Console, month: str) -> bool:
    """A month a report can cover and that has begun (:func:`check_month`)."""
    try:
        check_month(month, today=c.now().astimezone(c.cfg.gateway.tz).date())
    except ValueError:
        return False
    return True


@signed_in
def report_page(c: Console, request: Request, _session: Session, row: AccountRow) -> Response:
    """A month's supervision report as the page the bank receives (docs/security-team.md); the signed
    JSON comes from `gateway report` or the monthly delivery (the console holds no key)."""
    agency, month = request.path_params["agency"], request.path_params["month"]
    if agency not in {a.code for a in c.cfg.agencies} or not _reportable(c, month):
        return Response("No such report.", status_code=404)
    body = figures(c.cfg, c.ledger, c.log.entries(), agency, month, now=c.now())  # read in order
    c.log.record("console.export", account=row.name, page="compliance", format="html",
                 agency=agency)
    return HTMLResponse(as_html(body), headers={
        "Content-Disposition": f'attachment; filename="report.{agency}.{month}.html"'})
