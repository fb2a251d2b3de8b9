"""The kit's unmask requests and releases without gpg: what ``build`` refuses before anything
is sent, and the expiry — every copy of a release destroyed, recorded before it is done,
the contract's own batch untouched."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.errors import UsageError
from gateway.kit import config, unmask
from gateway.kit.files import StateDir
from gateway.kit.ledger import NOT_RELEASE, open_ledger
from tests.unit.test_kit_config import GOOD

NOW = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def kit(tmp_path):
    path = tmp_path / "agency.toml"
    text = GOOD.replace('state_dir = "var"', 'state_dir = "var"\nstore = "store"')
    path.write_text(text)
    cfg = config.load(path)
    ledger = open_ledger(cfg.state_dir)
    state = StateDir(cfg.state_dir)
    ledger.record_manifest(batch_id="B1", contract_id=cfg.contract_id, name="B1.AG001.manifest.json.pgp",
                           sha256="a" * 64, created_at="2026-11-02T00:00:00Z",
                           received_at="2026-11-02T00:00:00Z",
                           slices=[("B1.AG001.collector.csv.pgp", "collector", 2, "b" * 64)])
    ledger.record_cases("B1", ["C1", "C2"])
    yield cfg, ledger, state
    ledger.close()


def build(kit, **kw):
    cfg, ledger, _ = kit
    args = {"role": "collector", "purpose": "field_visit", "fields": ["home_address"],
            "note": "visits next week", "cases": ["C1"], "now": NOW} | kw
    return unmask.build(cfg, ledger, **args)


def test_a_good_request_is_built_new_each_time(kit):
    first, second = build(kit), build(kit, cases=["C1", "C2"])
    assert first.id != second.id and len(first.id) == 32
    assert first.agency == "AG001" and first.created_at == NOW and second.cases == ("C1", "C2")


@pytest.mark.parametrize(("kw", "words"), [
    ({"role": "supervisor"}, "--role: this installation holds no key of role supervisor"),
    ({"cases": []}, "no case ids"),
    ({"fields": []}, "--fields: name at least one field"),
    ({"cases": ["C1", "C1"]}, "the same case twice"),
    ({"fields": ["home_address", "home_address"]}, "lists 'home_address' twice"),
    ({"note": "call 13812345678"}, "--note: \"note\" must not hold a number of seven"),
    ({"note": "x" * 501}, "--note: \"note\" must be text of at most 500"),
    ({"note": "a\x1bb"}, "control, invisible or direction characters"),
    ({"purpose": "Field Visit"}, "--purpose: "),
    ({"cases": ["C1", "C9", "D1"]}, "2 case id(s) are not cases of contract C-2026-001 in the "
                                    "batches this kit holds: C9, D1"),
    ({"now": dt.datetime(2027, 11, 2, 1, tzinfo=dt.UTC)}, "contract C-2026-001 ended on 2027-11-01"),
])
def test_what_the_gateway_would_refuse_is_one_line(kit, kw, words):
    with pytest.raises(UsageError) as exc:
        build(kit, **kw)
    assert words in str(exc.value) and "\n" not in str(exc.value)
    assert "13812345678" not in str(exc.value)


def test_cases_file_and_fields(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\ufeff# case_id\nC1\n\n  C2  \n")
    assert unmask.read_cases(f) == ["C1", "C2"]
    assert unmask.split_list("home_address, id_number,") == ["home_address", "id_number"]
    with pytest.raises(UsageError, match="cannot read"):
        unmask.read_cases(tmp_path / "none.txt")


def _release(kit, expires: str) -> None:
    cfg, ledger, state = kit
    ledger.record_manifest(batch_id="unmask-1", contract_id=cfg.contract_id,
                           name="unmask-1.AG001.manifest.json.pgp", sha256="c" * 64,
                           created_at="2026-11-19T00:00:00Z", received_at="2026-11-19T00:00:00Z",
                           slices=[("unmask-1.AG001.collector.csv.pgp", "collector", 1, "d" * 64)],
                           release=("e" * 32, "field_visit", ["home_address"], "F" * 40, expires))
    ledger.mark_received("unmask-1.AG001.collector.csv.pgp", "2026-11-19T00:00:01Z")
    for name in ("unmask-1.AG001.manifest.json.pgp", "unmask-1.AG001.collector.csv.pgp",
                 "B1.AG001.collector.csv.pgp"):
        state.held(name).write_bytes(b"ciphertext")


def test_a_release_past_its_expiry_is_destroyed_everywhere_and_only_it(kit, tmp_path):
    cfg, ledger, state = kit
    _release(kit, "2026-11-20T07:00:00Z")
    assert cfg.store is not None
    cfg.store.mkdir(mode=0o700)
    stored = cfg.store / "unmask-1.AG001.collector.csv"
    stored.write_text("case_id,home_address\nC1,somewhere\n")
    ledger.mark_store_intent("unmask-1.AG001.collector.csv.pgp", str(stored))
    ledger.mark_stored("unmask-1.AG001.collector.csv.pgp", "2026-11-19T00:00:02Z")
    batch_copy = cfg.store / "B1.AG001.collector.csv"
    batch_copy.write_text("case_id\nC1\n")
    exported, moved = tmp_path / "out.csv", tmp_path / "moved.csv"
    for path in (exported, moved):
        eid = ledger.add_export(str(path), str(path) + ".part",
                                ["unmask-1.AG001.collector.csv.pgp"], "2026-11-19T01:00:00Z")
        ledger.export_done(eid, "2026-11-19T01:00:01Z")
    exported.write_text("plaintext")

    assert unmask.expire(cfg, ledger, state, NOW - dt.timedelta(hours=2)) == []  # not yet
    lines = unmask.expire(cfg, ledger, state, NOW)
    assert lines[0].startswith("release unmask-1 (unmask request eeeeeeee) expired at "
                               "2026-11-20T07:00:00Z")
    assert f"the exported file {moved} is no longer where it was written" in lines[1]
    assert not stored.exists() and not exported.exists()
    assert not state.held("unmask-1.AG001.collector.csv.pgp").exists()
    assert not state.held("unmask-1.AG001.manifest.json.pgp").exists()
    assert state.held("B1.AG001.collector.csv.pgp").exists() and batch_copy.exists()
    release = ledger.file("unmask-1.AG001.collector.csv.pgp")
    assert release is not None and release.destroyed_at == "2026-11-20T08:00:00Z"
    assert release.decrypted == "destroyed"
    assert ledger.release("unmask-1")["expired_at"] == "2026-11-20T08:00:00Z"  # type: ignore[index]
    assert [e["path"] for e in ledger.exports()] == [str(moved)]  # destroy asks about it again
    assert unmask.expire(cfg, ledger, state, NOW) == []  # done once
    # the contract's own data is not taken for destroyed (fetch still fills the store)
    assert ledger.files(contract_id=cfg.contract_id,
                        where=f"f.destroyed_at IS NOT NULL AND {NOT_RELEASE}") == []


def test_an_export_being_written_holds_the_release_back_and_a_killed_ones_leftovers_go(
        kit, tmp_path):
    """An `open --out` of the release still running at its expiry: its plaintext is not yet
    where the expiry looks, so the release waits for the next command instead of being
    marked destroyed with a copy about to appear. One whose command was killed (before or
    after its rename): its partial and its whole file are destroyed."""
    import subprocess
    import sys

    cfg, ledger, state = kit
    _release(kit, "2026-11-20T07:00:00Z")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        part, target = tmp_path / "r.csv.part", tmp_path / "r.csv"
        eid = ledger.add_export(str(target), str(part), ["unmask-1.AG001.collector.csv.pgp"],
                                "2026-11-20T06:00:00Z")
        ledger.db.execute("UPDATE exports SET pid = ? WHERE id = ?", (writer.pid, eid))
        ledger.db.commit()
        part.write_text("case_id,id_number\nC1,110105199003071234\n")
        (line,) = unmask.expire(cfg, ledger, state, NOW)
        assert f"an export of it is being written (process {writer.pid})" in line
        assert ledger.release("unmask-1")["expired_at"] is None  # type: ignore[index]
        assert state.held("unmask-1.AG001.collector.csv.pgp").exists()
    finally:
        writer.kill()
        writer.wait()
    part.rename(target)  # the writer got as far as its rename, then was killed
    lines = unmask.expire(cfg, ledger, state, NOW)
    assert lines[0].startswith("release unmask-1 (unmask request eeeeeeee) expired")
    assert not target.exists() and not part.exists()
    assert ledger.file("unmask-1.AG001.collector.csv.pgp").decrypted == "destroyed"  # type: ignore[union-attr]
    assert ledger.exports() == []
