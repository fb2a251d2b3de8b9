"""The kit's command line: help on every command, one-line errors, and the boundary —
the kit imports nothing of the gateway's own side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer.main

from gateway.kit import export
from gateway.kit.cli import app, main


def test_every_command_has_help(capsys):
    cli = typer.main.get_command(app)
    names = sorted(cli.commands)  # type: ignore[attr-defined]
    assert names == ["destroy", "export", "fetch", "init", "open", "results", "status", "unmask"]
    for name in names:
        assert (cli.commands[name].help or "").strip(), name  # type: ignore[attr-defined]
        assert main([name, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "Usage" in shown and "<bool>" not in shown, (name, shown)


def test_a_config_error_is_one_line_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "agency.toml"
    bad.write_text('code = "AG001"\n')
    assert main(["status", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: {bad}: contract_id: is required" in err.splitlines()


def test_a_missing_config_says_how_to_make_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GATEWAY_AGENCY_CONFIG", str(tmp_path / "none.toml"))
    assert main(["status"]) == 2
    assert "gateway-agency init" in capsys.readouterr().err


def test_init_writes_a_sample_once(tmp_path, capsys):
    assert main(["init", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "agency.toml").exists()
    assert main(["init", str(tmp_path / "k")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_kit_imports_nothing_of_the_gateways_own_side():
    """The kit runs at the agency: it must not need (or be able to reach) the bank's
    configuration, ledger, flows, daemon, console or audit log. Of gateway.config it uses
    the zone models only (importing them loads the package, which is why the check is on
    these modules, and on the kit's own import lines below).

    Of gateway.unmask, exactly the request's module: it is pure (the request's form and
    its parser, no I/O, no configuration), and the kit writing requests with the
    gateway's own writer and checking them with its own parser is what keeps the two
    from drifting apart. The rest of gateway.unmask (decide, release, register) is the
    bank's side."""
    code = ("import sys, gateway.kit.cli, gateway.kit.fetch, gateway.kit.results, "
            "gateway.kit.destroy, gateway.kit.export, gateway.kit.status, gateway.kit.send, "
            "gateway.kit.unmask; "
            "print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
            "(['gateway', 'flows'], ['gateway', 'ledger'], ['gateway', 'daemon'], "
            "['gateway', 'console'], ['gateway', 'audit'], ['gateway', 'cli']) "
            "or (m.startswith('gateway.unmask.') and m != 'gateway.unmask.request')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_the_kit_takes_only_the_zone_models_from_the_gateways_config():
    import ast
    from pathlib import Path

    kit = Path(__file__).resolve().parents[2] / "gateway" / "kit"
    found = []
    for path in sorted(kit.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "gateway.config":
                found += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "gateway" and any(
                    a.name == "config" for a in node.names):
                found.append("config")
    assert set(found) <= {"LocalZone", "SftpZone"}


def test_xlsx_column_letters():
    assert [export._column(i) for i in (0, 25, 26, 27, 701, 702)] == \
        ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_the_mask_scan_names_masked_columns():
    scan = export.MaskScan()
    for chunk in (b"case_id,account_number,na", b"me\r\nC1,****7894,\xe7\x8e\x8b\xe8\x8a\xb3\r\n",
                  b"C2,****1111,\xe6\x9d\x8e*"):
        scan.feed(chunk)
    scan.finish()
    assert "columns with masked values (*): account_number, name" in scan.note("collector", "s")


def test_a_second_fetch_stops_at_once_while_one_runs(tmp_path, capsys):
    import fcntl

    from tests.unit.test_kit_config import GOOD

    (tmp_path / "agency.toml").write_text(GOOD)
    (tmp_path / "var").mkdir(mode=0o700)
    with (tmp_path / "var" / "kit.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert main(["fetch", "--config", str(tmp_path / "agency.toml")]) == 1
    assert "another gateway-agency command" in capsys.readouterr().err


def test_keyrings_of_killed_commands_are_swept_and_only_those(tmp_path):
    """A kill leaves /tmp/gwa<pid>-* with copies of the agency's secret keys; the next
    command removes those whose process is gone — never a live one's, never another's."""
    from gateway.kit import crypto

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Path(tempfile.mkdtemp(prefix=f"gwa{gone.pid}-", dir="/tmp"))
    (dead / "g" / "private-keys-v1.d").mkdir(parents=True)
    (dead / "g" / "private-keys-v1.d" / "k.key").write_text("secret")
    live = Path(tempfile.mkdtemp(prefix=f"gwa{os.getpid()}-", dir="/tmp"))
    old_style = Path(tempfile.mkdtemp(prefix="gwa", dir="/tmp"))
    try:
        swept = crypto.sweep_keyrings()
        assert dead in swept and not dead.exists()
        assert live.exists() and old_style.exists()
    finally:
        for d in (dead, live, old_style):
            shutil.rmtree(d, ignore_errors=True)
