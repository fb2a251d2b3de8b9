"""The hashed locks refuse what they do not hold, and `make sbom` describes the venv.

pip runs offline against the wheelhouse `make venv` keeps in .venv/wheelhouse (the runtime
lock as wheels), with ``--dry-run --ignore-installed``: it fetches and hash-checks every file
as an install does, and stops before installing. The untouched runtime lock passes; the same
lock with one package's hashes changed (a file that is not the one locked), or without a
package another one needs, fails — as `make venv` fails on it.

`make sbom` runs against this venv, and its CycloneDX JSON is read back: every package of
both locks, at its locked version and with its PURL, the gateway as the main component, and
the document valid against CycloneDX's schema (the copy the library ships: no network).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from tests.unit.test_locks import RUNTIME, TEST, pins

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_NO_INDEX": "1"}


def _blocks(lock: Path) -> dict[str, str]:
    """The lock's text per package (its pin, hashes and comments), in order."""
    parts = re.split(r"(?m)^(?=[A-Za-z0-9])", lock.read_text(encoding="utf-8"))
    return {canonicalize_name(p.split("==")[0]) if "==" in p.split("\n")[0] else "": p
            for p in parts}


def _pip_dry_run(lock_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make venv` makes it; or run `make test`")
    lock = tmp_path / "runtime.lock"
    lock.write_text(lock_text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
         "--find-links", str(WHEELHOUSE), "--require-hashes", "-r", str(lock)],
        env={**os.environ, **OFFLINE}, capture_output=True, text=True, check=False, timeout=240)


def test_the_runtime_lock_as_it_is_installs(tmp_path):
    proc = _pip_dry_run(RUNTIME.read_text(encoding="utf-8"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    (would,) = re.findall(r"^Would install (.+)$", proc.stdout, flags=re.M)
    chosen = {canonicalize_name(n): v for n, v in (w.rsplit("-", 1) for w in would.split())}
    assert chosen == {name: version for name, (version, _) in pins(RUNTIME).items()}


def test_a_file_whose_hash_is_not_in_the_lock_is_refused(tmp_path):
    blocks = _blocks(RUNTIME)
    assert "paramiko" in blocks
    blocks["paramiko"] = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, blocks["paramiko"])
    proc = _pip_dry_run("".join(blocks.values()), tmp_path)
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr and "paramiko" in proc.stderr, proc.stderr


def test_a_dependency_missing_from_the_lock_is_refused(tmp_path):
    blocks = _blocks(RUNTIME)
    assert "mako" in blocks  # alembic's: the migrations' templates
    del blocks["mako"]
    proc = _pip_dry_run("".join(blocks.values()), tmp_path)
    assert proc.returncode != 0
    assert "--require-hashes" in proc.stderr and re.search(r"(?i)\bmako\b", proc.stderr), proc.stderr


def test_make_sbom_lists_every_locked_package_with_its_version_and_purl(tmp_path):
    sbom = tmp_path / "sbom.cdx.json"
    stamp = Path(sys.prefix) / ".installed"  # never rebuild the venv the tests run in
    proc = subprocess.run(["make", "--no-print-directory", "-o", str(stamp), "sbom",
                           f"VENV={sys.prefix}", f"SBOM={sbom}"],
                          cwd=REPO, env={**os.environ, **OFFLINE}, capture_output=True, text=True,
                          check=False, timeout=240)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    text = sbom.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None

    root = doc["metadata"]["component"]
    assert (root["name"], root["type"]) == ("gateway", "application")
    assert root["version"] == importlib.metadata.version("gateway")

    components = {canonicalize_name(c["name"]): c for c in doc["components"]}
    locked = {**pins(RUNTIME), **pins(TEST)}
    missing = sorted(set(locked) - set(components))
    assert not missing, f"locked but not in the SBOM: {missing}"
    for name, (version, _) in locked.items():
        c = components[name]
        assert c["version"] == version, f"{name}: SBOM {c['version']}, lock {version}"
        purl = PackageURL.from_string(c["purl"])
        assert (purl.type, canonicalize_name(purl.name), purl.version) == ("pypi", name, version)

    # The gateway's own dependencies hang from the main component.
    (edges,) = [d for d in doc["dependencies"] if d["ref"] == root["bom-ref"]]
    refs = {canonicalize_name(r.split("==")[0]) for r in edges["dependsOn"]}
    assert {"paramiko", "pydantic", "sqlalchemy", "starlette", "psycopg"} <= refs
