"""The [alerts] section: a misconfiguration is one line naming the key path; the change
window; which audit entries are alerts."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest

from gateway import config, scaffold
from gateway.alerts.rules import from_entry
from gateway.config.alerts import parse_window
from gateway.errors import ConfigError

SMTP = '[alerts.smtp]\nhost = "{host}"\nfrom = "gw@bank.example"\n{extra}\n'


@pytest.fixture
def cfg_path(tmp_path):
    return scaffold.init_project(tmp_path / "site")


def problems_of(path: Path, text: str) -> list[str]:
    path.write_text(path.read_text() + "\n[alerts]\n" + text)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    return str(exc.value).splitlines()


@pytest.mark.parametrize(("text", "expected"), [
    (SMTP.format(host="smtp.bank.internal", extra='tls = "none"') + '[alerts.recipients]\n'
     'critical = ["a@bank.example"]\n', 'tls = "none" is for a relay on loopback only'),
    (SMTP.format(host="smtp.bank.internal", extra="") + '[alerts.recipients]\n'
     'critical = ["a@bank.example"]\n', "ca_file is required"),
    (SMTP.format(host="127.0.0.1", extra='tls = "none"\nusername = "gw"') + '[alerts.recipients]\n'
     'critical = ["a@bank.example"]\n', "username and password_env go together"),
    ('[alerts.recipients]\ncritical = ["a@bank.example"]\n', "[alerts.smtp] is not"),
    ('change_window = "Mon-Fri 17:00-09:00"\n', "alerts.change_window"),
    ('[[alerts.webhooks]]\nurl = "http://soc.bank.internal/x"\nca_file = "ca.pem"\n'
     'secret_env = "K"\n', "alerts.webhooks[0].url"),
    ('[alerts.thresholds]\nzone_down_minuts = 5\n', "alerts.thresholds.zone_down_minuts: unknown key"),
])
def test_a_misconfiguration_is_one_line_naming_the_key(cfg_path, text, expected):
    (line,) = problems_of(cfg_path, text)
    assert expected in line and line.count(":") >= 1


def test_a_loopback_relay_may_go_without_tls(cfg_path):
    cfg_path.write_text(cfg_path.read_text() + "\n[alerts]\n" + SMTP.format(
        host="127.0.0.1", extra='tls = "none"') + '[alerts.recipients]\nwarning = ["a@b.example"]\n')
    cfg = config.load(cfg_path)
    assert cfg.alerts is not None and cfg.alerts.smtp is not None
    assert cfg.alerts.thresholds.key_expiry_days == 30 and cfg.alerts.reminder_hours == 24


def test_the_change_window():
    w = parse_window("Mon-Fri 09:00-17:00")
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    assert w.contains(dt.datetime(2026, 12, 7, 9, 0, tzinfo=tz))  # a Monday
    assert not w.contains(dt.datetime(2026, 12, 7, 17, 0, tzinfo=tz))
    assert not w.contains(dt.datetime(2026, 12, 6, 10, 0, tzinfo=tz))  # a Sunday
    assert parse_window("Sat-Mon 00:00-24:00").days == frozenset({5, 6, 0})
    entry = {"event": "console.account_reset", "seq": 9, "account": "anna", "actor": "root",
             "ts": "2026-12-07T02:00:00Z"}  # 10:00 in Shanghai, a Monday
    assert from_entry(entry, "gw1", tz, w) is None
    late = from_entry({**entry, "ts": "2026-12-07T12:00:00Z"}, "gw1", tz, w)
    assert late is not None and late.key == "account_change:anna:9" and late.severity == "warning"
    assert from_entry({"event": "file.received", "seq": 1, "ts": entry["ts"]}, "gw1", tz, w) is None


def test_an_alerts_section_with_no_channel_is_refused(cfg_path):
    (line,) = problems_of(cfg_path, "reminder_hours = 12\n")
    assert line.startswith("gateway.toml: alerts: no channel") or "alerts: no channel" in line


def test_a_rejected_file_with_a_long_name_fits_the_alert_columns():
    """A sender chooses the name (up to 255 characters): the alert's key is its hash (the
    key column is 200), the subject cut to its column — PostgreSQL would refuse either."""
    name = "B" + "x" * 250 + ".csv.pgp"
    found = from_entry({"event": "file.rejected", "seq": 7, "ts": "2026-12-01T00:00:00Z",
                        "file": name, "code": "E_DECRYPT", "zone": "bank.outgoing"},
                       "gw1", zoneinfo.ZoneInfo("Asia/Shanghai"), None)
    assert found is not None and len(found.key) <= 200 and len(found.subject) <= 160
    assert len(found.detail) <= 500 and found.key.startswith("file_rejected:")
