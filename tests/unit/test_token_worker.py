"""The keyed token rule off the daemon's interpreter lock: the column version and the worker
process give what :func:`gateway.masking.token` gives, for every key length and value; the
worker dies with its parent, and when it is gone the tokens are still right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import masking, masking_columns
from gateway.masking import Rule
from gateway.token_worker import CHILD, TokenWorker
from tests import exec_audit

ROOT = Path(__file__).resolve().parents[2]
KEYS = st.binary(max_size=130)  # HMAC hashes a key longer than its block (64 bytes) first
VALUES = st.lists(st.text(max_size=12), max_size=20)


@pytest.fixture(scope="module")
def worker():
    w = TokenWorker()
    yield w
    w.close()


@given(KEYS, VALUES, st.integers(0, 3))
def test_the_column_token_is_the_reference_for_any_key_and_slice(key, values, skip):
    col = pa.array(["x"] * skip + values, pa.string()).slice(skip)
    assert masking_columns.token(key, col).to_pylist() == [masking.token(key, v) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES, st.integers(0, 3)), max_size=4))
def test_the_worker_gives_the_reference_tokens_job_after_job(worker, jobs):
    cols = [(key, pa.array(["x"] * skip + values, pa.string()).slice(skip))
            for key, values, skip in jobs]
    got = worker(cols)()
    assert [c.to_pylist() for c in got] == [[masking.token(k, v) for v in vs] for k, vs, _ in jobs]


def test_requests_answered_in_the_order_they_were_made(worker):
    first = worker([(b"a", pa.array(["张三", "李四"]))])
    second = worker([(b"b", pa.array(["王五"]))])
    assert second()[0].to_pylist() == [masking.token(b"b", "王五")]  # its own reply, not the first's
    assert first()[0].to_pylist() == [masking.token(b"a", v) for v in ("张三", "李四")]


def test_a_lost_worker_leaves_the_tokens_to_this_thread():
    w = TokenWorker()
    assert w._proc is not None
    w._proc.kill()
    w._proc.wait()
    col = pa.array(["张三", "x"])
    assert w([(b"k", col)])()[0].to_pylist() == [masking.token(b"k", v) for v in ("张三", "x")]
    assert w._proc is None  # from then on, no worker
    assert w([(b"k", col)])()[0].to_pylist() == [masking.token(b"k", v) for v in ("张三", "x")]


def test_the_worker_ends_with_its_stdin_and_so_with_a_killed_parent(tmp_path):
    """The daemon killed (no cleanup at all): the worker reads the end of its stdin and exits."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gateway.token_worker import TokenWorker; "
         "w = TokenWorker(); print(w._proc.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running (not a zombie: the killed parent's child is reaped by init, or not yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_exec_audit_allows_the_worker_and_only_it():
    argv = [sys.executable, "-I", "-S", "-c", CHILD]
    rec = {"program": sys.executable, "argv": argv, "given": "list", "shell": False,
           "pathlike": [i for i, a in enumerate(argv[1:], 1) if "/" in a]}
    assert exec_audit.problems({**rec, "caller": "gateway.token_worker:90"}) == []
    assert exec_audit.problems({**rec, "caller": "gateway.flows.batches:9"})
    assert exec_audit.problems({**rec, "caller": None})
    assert exec_audit.problems({**rec, "argv": [sys.executable, "-c", CHILD],
                                "caller": "gateway.token_worker:90"})


def test_two_roles_tokenising_a_field_hash_it_once_per_agency():
    calls: list[int] = []

    def counting(jobs: masking_columns.TokenJobs):
        calls.append(len(jobs))
        return masking_columns.tokens_here(jobs)

    table = pa.table({"customer_name": ["张三", "", "李四", "王五"], "case_id": ["1", "2", "3", "4"]})
    masks = masking_columns.ChunkMasks(table, frozenset(), counting)
    spans = [(0, 2, b"a" * 32), (2, 2, b"b" * 32)]
    roles = [masking.RolePolicy(r, {"case_id": Rule.FULL, "customer_name": Rule.TOKEN}) for r in "xy"]
    masks.prefetch(s for p in roles for s in masks.token_spans(p, ["customer_name"], spans))
    for policy in roles:
        (_, names), _ = masks.spans(policy, ["case_id", "customer_name"], spans)
        assert names.to_pylist() == [masking.token(b"a" * 32, "张三"), "",
                                     masking.token(b"b" * 32, "李四"), masking.token(b"b" * 32, "王五")]
    assert calls == [2]  # one request, one job per agency, for both roles


def test_an_empty_span_needs_no_key_and_a_filled_one_does():
    table = pa.table({"customer_name": ["张三", "李四"]})
    masks = masking_columns.ChunkMasks(table, frozenset())
    policy = masking.RolePolicy("r", {"customer_name": Rule.TOKEN})
    (col,), _ = masks.spans(policy, ["customer_name"], [(0, 0, None), (0, 2, b"k")])
    assert col.to_pylist() == [masking.token(b"k", v) for v in ("张三", "李四")]
    with pytest.raises(ValueError, match="secret"):
        masks.spans(policy, ["customer_name"], [(0, 2, None)])
