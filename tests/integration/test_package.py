"""The package, used where the repository is not.

``python -m build`` (without isolation: offline) makes the sdist and, from it, the wheel, in a
git clone of this checkout; a fresh venv installs, as docs/install.md says, the runtime lock
with ``--require-hashes`` and then the wheel with ``--no-deps``, with ``--no-index`` from the
wheelhouse ``make venv`` keeps in .venv/wheelhouse (the runtime lock as wheels), with every
proxy pointing nowhere, and ``pip check`` finds nothing missing; then
``gateway --version`` and ``gateway demo`` run from that venv, in a directory outside the
repository, with the clone already deleted. The version tests read setuptools-scm's answer
for a tag, a clone without tags, a ``git archive`` tarball and a bare copy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "PIP_CONFIG_FILE": os.devnull}  # the machine's pip configuration plays no part


def _env(**extra: str) -> dict[str, str]:
    """This environment without what would lead a child back to the repository or this venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    return {**env, **OFFLINE, **extra}


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or _env(), capture_output=True,
                          text=True, check=False, timeout=240)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _git(*args: str, cwd: Path) -> str:
    return _run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args, cwd=cwd)


def _clone(dest: Path) -> Path:
    """A git clone of this checkout (its history and tags: setuptools-scm reads the version
    from them) with the working tree laid over it, so what is built is what is on disk."""
    _run("git", "clone", "--quiet", REPO, dest, cwd=dest.parent)
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, dest / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.is_file():  # deleted in the working tree, not yet committed
            target.unlink()
    return dest


def _scm_version(root: Path) -> str:
    return _run(sys.executable, "-m", "setuptools_scm", cwd=root).strip()


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make venv` (the $(STAMP) rule) makes it; "
                    "or run `make test`")
    return WHEELHOUSE


def test_the_wheel_installs_offline_into_a_fresh_venv_and_runs_the_demo(tmp_path, wheelhouse):
    source = _clone(tmp_path / "source")
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ".", cwd=source)
    (sdist,) = dist.glob("gateway-*.tar.gz")
    (wheel,) = dist.glob("gateway-*-py3-none-any.whl")
    version = wheel.name.split("-")[1]
    assert sdist.name == f"gateway-{version}.tar.gz"
    assert version == _scm_version(source)

    # Everything under gateway/ that git tracks, not only modules: console templates and
    # static files, the report template, the migrations with script.py.mako.
    tracked = set(filter(None, _run("git", "ls-files", "-z", "gateway", cwd=source).split("\0")))
    with zipfile.ZipFile(wheel) as zf:
        missing = tracked - set(zf.namelist())
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert {"gateway/console/templates/base.html", "gateway/console/static/console.css",
            "gateway/reports/report.html", "gateway/ledger/migrations/script.py.mako"} <= tracked
    with tarfile.open(sdist) as tf:  # docs/install.md: the lock is in the sdist too
        assert f"gateway-{version}/requirements/runtime.lock" in tf.getnames()
    lock = shutil.copy(source / "requirements" / "runtime.lock", dist)  # as `make dist` does
    shutil.rmtree(source)  # nothing below may find the sources

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip = venv / "bin" / "pip"
    _run(pip, "install", "--quiet", "--no-index", "--find-links", wheelhouse, "--require-hashes",
         "-r", lock, cwd=tmp_path)
    _run(pip, "install", "--quiet", "--no-index", "--no-deps", wheel, cwd=tmp_path)
    _run(pip, "check", cwd=tmp_path)
    gateway = venv / "bin" / "gateway"

    where = _run(venv / "bin" / "python", "-c", "import gateway; print(gateway.__file__)",
                 cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(venv), where
    assert _run(gateway, "--version", cwd=tmp_path) == f"gateway {version}\n"
    kit = venv / "bin" / "gateway-agency"  # the agency kit, from the same wheel
    assert _run(kit, "--version", cwd=tmp_path) == f"gateway-agency {version}\n"

    out = _run(gateway, "demo", "--dir", "demo", cwd=tmp_path)
    assert '"accepted": 1000' in out and "chain intact" in out
    assert "good signature" in out
    # The closing hint names this executable (not on PATH), and the command works as printed.
    (hint,) = re.findall(r"Next: (.+)$", out, flags=re.MULTILINE)
    assert hint == f"{shlex.quote(str(gateway))} batches -c demo/gateway.toml"
    assert re.search(r"accepted\s+1000\s+1000", _run(*shlex.split(hint), cwd=tmp_path))


def test_the_version_comes_from_the_tag_and_falls_back_without_one(tmp_path):
    clone = tmp_path / "clone"
    _run("git", "clone", "--quiet", "--no-tags", REPO, clone, cwd=tmp_path)
    commits = int(_run("git", "rev-list", "--count", "HEAD", cwd=clone))
    head = _run("git", "rev-parse", "--short=9", "HEAD", cwd=clone).strip()
    assert re.fullmatch(rf"0\.1\.dev{commits}\+g{head}[0-9a-f]*", _scm_version(clone))

    bare = tmp_path / "bare"  # a copy without git: the fallback
    shutil.copytree(clone, bare, ignore=shutil.ignore_patterns(".git", ".git_archival.txt"))
    assert _scm_version(bare) == "0.0"

    _git("tag", "v9.8.7", cwd=clone)  # the form a release tag takes (v0.2.0)
    assert _scm_version(clone) == "9.8.7"
    archive = tmp_path / "archive"  # `git archive` fills in .git_archival.txt
    archive.mkdir()
    tar = subprocess.run(["git", "archive", "HEAD"], cwd=clone, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x"], cwd=archive, input=tar, check=True)
    assert _scm_version(archive) == "9.8.7"
    _git("commit", "--quiet", "--allow-empty", "-m", "after the release", cwd=clone)
    assert re.fullmatch(r"9\.8\.8\.dev1\+g[0-9a-f]+", _scm_version(clone))
