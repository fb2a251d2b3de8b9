"""The console behind a real reverse proxy (issue 22, deliverable 3): Debian's nginx as a
child process (its own prefix, config, pid and logs under the test's directory) ending
TLS on a loopback port with a certificate made here, in front of `gateway console`, and
Debian's Chromium logging in through it.

The nginx server block and the `[console]` settings are read from
docs/console-behind-nginx.md and changed only in ports, paths and the name — so the
page people follow is the configuration tested. The browser reaches the proxy as
``console.test`` (a reserved name, mapped to 127.0.0.1 inside Chromium) and accepts
the self-signed certificate.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pyotp
import pytest

from gateway import audit, synth
from gateway.console.auth import Accounts
from gateway.ledger import Ledger
from tests.flowsite import Site
from tests.integration.test_console import PAGES, PASSWORD, by, chromium, free_port, submit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "console-behind-nginx.md"
NAME = "console.test"  # RFC 6761: never a real host


def doc_block(language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return block


def replaced(text: str, changes: dict[str, str]) -> str:
    """*text* with each key replaced; each must be there (the doc and the test agree)."""
    for old, new in changes.items():
        assert old in text, f"{DOC.name} no longer says {old!r}"
        text = text.replace(old, new)
    return text


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                      else None)
    if found is None:
        pytest.fail("nginx (Debian package nginx-light) is needed: make system-deps")
    return found


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for *name* and its key (mode 0600), by the `cryptography` package
    when the venv has it, else by the openssl command."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                       .public_key(private.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(minutes=5))
                       .not_valid_after(now + dt.timedelta(days=2))
                       .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                                      critical=False)
                       .sign(private, hashes.SHA256()))
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    key.chmod(0o600)
    return cert, key


class Nginx:
    """nginx in the foreground under *prefix*: the doc's server block inside a main
    configuration of its own (pid, logs and temporary files under the prefix)."""

    def __init__(self, prefix: Path, server_block: str, port: int) -> None:
        prefix.mkdir(parents=True)
        (prefix / "console.conf").write_text(server_block)
        temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(f"""
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix / "access.log"};
{temp}
    include {prefix / "console.conf"};
}}
""")
        self.prefix, self.port = prefix, port
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
             "-e", str(prefix / "error.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_port(port, self.proc, self.log)

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)


def wait_for_port(port: int, proc: subprocess.Popen[str], why=lambda: "") -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, (proc.communicate()[0], why())
            assert time.monotonic() < deadline, f"nothing answers on port {port}: {why()}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory, keybox):
    """A site after one batch; `gateway console` on loopback with the doc's [console]
    settings; nginx with the doc's server block in front. Yields the proxy's port, the
    site, erin's TOTP secret and the file the console writes its stderr to."""
    root = tmp_path_factory.mktemp("proxy")
    site = Site(root / "site", keybox)
    site.drop_cases("B1.csv.pgp", list(synth.cases(12, ["AG001", "AG002"], seed=7)))
    assert site.run() == {"accepted": 1}
    console_port, tls_port = free_port(), free_port()
    settings = replaced(doc_block("toml"), {'"127.0.0.1:8080"': f'"127.0.0.1:{console_port}"',
                                            '"console.bank.example"': f'"{NAME}"'})
    text = site.config.read_text()
    start = re.search(r"^\[console\]", text, re.M).start()
    end = text.index("\n[", start)
    keys = {ln.split("=")[0].strip() for ln in settings.splitlines()[1:]}
    kept = [ln for ln in text[start:end].splitlines()[1:] if ln.split("=")[0].strip() not in keys]
    site.config.write_text(text[:start] + "\n".join([*settings.rstrip().splitlines(), *kept])
                           + text[end:])
    ledger = Ledger(site.cfg().gateway.db_url)
    secret = Accounts(ledger, audit.AuditLog(site.state / "audit")).add(
        "erin", "auditor", PASSWORD).secret
    ledger.close()
    log = root / "console.stderr"  # a file: any test may read what was said so far
    with log.open("w") as err:
        console = subprocess.Popen([sys.executable, "-m", "gateway", "console", "-c",
                                    str(site.config)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_port(console_port, console, log.read_text)
        cert, key = self_signed(root, NAME)
        nginx = Nginx(root / "nginx", replaced(doc_block("nginx"), {
            "listen 443 ssl;": f"listen 127.0.0.1:{tls_port} ssl;",
            "server_name console.bank.example;": f"server_name {NAME};",
            "/etc/ssl/certs/console.bank.example.crt": str(cert),
            "/etc/ssl/private/console.bank.example.key": str(key),
            "proxy_pass http://127.0.0.1:8080;": f"proxy_pass http://127.0.0.1:{console_port};"}),
            tls_port)
        try:
            yield tls_port, site, secret, log
        finally:
            nginx.stop()
    finally:
        console.terminate()
        console.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    driver = chromium("--ignore-certificate-errors", f"--host-resolver-rules=MAP {NAME} 127.0.0.1")
    yield driver
    driver.quit()


def https(port: int, path: str, *, host: str, cookie: str = "", method: str = "GET",
          body: str | None = None, headers: dict[str, str] | None = None
          ) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to nginx over TLS (the self-signed certificate accepted) as *host*."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    sent = {"Host": host, **({"Cookie": cookie} if cookie else {}), **(headers or {})}
    if body is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_log_in_through_nginx_with_secure_cookies_pages_and_an_export(behind_nginx, browser):
    port, site, secret, _ = behind_nginx
    url = f"https://{NAME}:{port}"
    browser.delete_all_cookies()
    browser.get(url + "/login")
    browser.find_element(*by("input[name=name]")).send_keys("erin")
    browser.find_element(*by("input[name=password]")).send_keys(PASSWORD)
    browser.find_element(*by("input[name=code]")).send_keys(pyotp.TOTP(secret).now())
    submit(browser, "button[type=submit]")
    assert browser.current_url == url + "/", browser.page_source[-800:]
    cookie = next(c for c in browser.get_cookies() if c["name"] == "gw_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    for name, path in PAGES.items():
        browser.get(url + path)
        assert browser.title.startswith(browser.find_element(*by("h1")).text), name
    session = f"gw_session={cookie['value']}"
    status, headers, body = https(port, "/audit/export.jsonl", host=f"{NAME}:{port}",
                                  cookie=session)
    assert status == 200 and headers["Content-Disposition"].startswith("attachment")
    exported = [json.loads(line) for line in body.splitlines()]
    assert "batch.accepted" in {e["event"] for e in exported}
    # it went through nginx — which logs a request once it has sent the answer: the line may
    # come a moment after the client has read it all
    access_log = site.root.parent / "nginx" / "access.log"
    deadline = time.monotonic() + 10
    while "GET /audit/export.jsonl" not in (access := access_log.read_text()):
        assert time.monotonic() < deadline, access[-2000:]
        time.sleep(0.05)
    assert "POST /login" in access
    login = [e for e in audit.AuditLog(site.state / "audit").entries()
             if e["event"] == "console.login"][-1]
    assert (login["account"], login["address"]) == ("erin", "127.0.0.1")
    # a redirect names the host and scheme the browser used, not the console's own
    status, headers, _ = https(port, "/audit/", host=f"{NAME}:{port}", cookie=session)
    assert status == 307 and headers["Location"] == f"{url}/audit"


def test_a_foreign_host_through_nginx_gets_400_from_the_console(behind_nginx):
    port, _site, _secret, _ = behind_nginx
    for path in ("/login", "/audit/", "/"):
        status, headers, body = https(port, path, host="evil.example")
        assert status == 400 and "Location" not in headers, (path, body)
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")  # the console's


def test_a_forged_x_forwarded_for_does_not_reach_the_audit_log(behind_nginx):
    """nginx sets X-Forwarded-For to the address that connected (the doc's
    ``$remote_addr``): what a client sends in its own header is dropped."""
    port, site, _secret, _ = behind_nginx
    host = f"{NAME}:{port}"
    status, headers, page = https(port, "/login", host=host)
    assert status == 200 and "secure" in headers["Set-Cookie"].lower()
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode({"csrf": token, "name": "erin", "password": "not the password",
                                   "code": "000000"})
    status, _, _ = https(port, "/login", host=host, method="POST", body=form,
                         cookie=headers["Set-Cookie"].split(";")[0],
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 401
    failed = [e for e in audit.AuditLog(site.state / "audit").entries()
              if e["event"] == "console.login_failed"][-1]
    assert (failed["account"], failed["address"]) == ("erin", "127.0.0.1")


def test_the_console_behind_its_proxy_gives_no_plain_http_warning(behind_nginx):
    *_, log = behind_nginx
    said = log.read_text()
    assert "console: http://127.0.0.1:" in said
    assert "console.cleartext" not in said and "Traceback" not in said, said
