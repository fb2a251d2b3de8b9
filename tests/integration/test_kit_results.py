"""``gateway-agency results`` against the gateway itself: for generated results files with
random errors, the kit's errors (row, code, field), their total and the status it predicts
equal the gateway's receipt for the same file; a clean file sent by the kit is accepted."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import zoneinfo

import pytest

from gateway import synth
from gateway.kit import results as kit_results
from tests.flowsite import Site
from tests.kitsite import KitSite

pytestmark = pytest.mark.integration

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
COLUMNS = ["case_id", "action_at", "action_code", "contact_target", "outcome", "amount",
           "promise_date", "new_mobile", "new_address", "note", "collector_id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, keybox):
    """One gateway with a delivered batch, and AG001's kit holding it (fetched)."""
    root = tmp_path_factory.mktemp("kitresults")
    site = Site(root / "site", keybox)
    site.records = list(synth.cases(12, ["AG001", "AG002"], seed=7))
    site.drop_cases("B1.csv.pgp", site.records)
    assert site.run() == {"accepted": 1}
    kit = KitSite(root / "kit", site, keybox)
    assert kit.run("fetch") == (0, "", "")
    for p in kit.outbox():  # the ack: the gateway does not take acknowledgements yet
        p.unlink()
    ag1 = [r["case_id"] for r in site.records if r["agency_code"] == "AG001"]
    ag2 = [r["case_id"] for r in site.records if r["agency_code"] == "AG002"]
    return site, kit, ag1, ag2


def when(rnd: random.Random) -> str:
    day = dt.datetime.now(TZ).date() - dt.timedelta(days=rnd.randrange(1, 20))
    return f"{day.isoformat()}T{rnd.randrange(7, 23):02d}:{rnd.randrange(60):02d}:00"


def good_row(rnd: random.Random, ag1: list[str]) -> dict[str, str]:
    action = rnd.choice(["CALL", "SMS", "VISIT", "PROMISE_TO_PAY", "PAYMENT_REPORTED",
                         "CONTACT_UPDATE", "LETTER"])
    row = {"case_id": rnd.choice(ag1), "action_at": when(rnd), "action_code": action,
           "contact_target": rnd.choice(["debtor", "contact", "none"]), "collector_id": "col-1",
           "outcome": rnd.choice(["", "已接通", "无人接听"])}
    if action in ("PROMISE_TO_PAY", "PAYMENT_REPORTED"):
        row["amount"] = f"{rnd.randrange(1, 9999)}.00"
    if action == "PROMISE_TO_PAY":
        row["promise_date"] = (dt.date.today() + dt.timedelta(days=9)).isoformat()
    if action == "CONTACT_UPDATE":
        row["new_mobile"] = "13800000009"
    return row


def spoil(rnd: random.Random, row: dict[str, str], ag2: list[str]) -> dict[str, str]:
    """One or two of the ways a row goes wrong."""
    for _ in range(rnd.choice([1, 1, 2])):
        kind = rnd.randrange(13)
        if kind == 0:
            row["case_id"] = rnd.choice(ag2)  # another agency's case: E_NOT_ASSIGNED
        elif kind == 1:
            row["case_id"] = "NO-SUCH-CASE"
        elif kind == 2:
            row["case_id"] = "bad id!"
        elif kind == 3:
            row["action_at"] = rnd.choice(["2026-13-01T10:00:00", "yesterday", "2026-11-19 25:00"])
        elif kind == 4:
            row["action_at"] = (dt.date.today() + dt.timedelta(days=3)).isoformat() + "T10:00:00"
        elif kind == 5:
            row["action_code"] = "PHONE"
        elif kind == 6:
            row["contact_target"] = rnd.choice(["", "neighbour"])
        elif kind == 7:
            row["action_code"], row["amount"], row["promise_date"] = "PROMISE_TO_PAY", "", ""
        elif kind == 8:
            row["amount"] = rnd.choice(["-5", "1,000.00", "3.141"])
        elif kind == 9:
            row["collector_id"] = rnd.choice(["", "x" * 40])
        elif kind == 10:
            row["note"] = rnd.choice(["a\u200bb", "x" * 501, "bell\x07"])
        elif kind == 11:
            row["new_mobile"] = "12345"
        else:
            row["action_at"] = "  " + row.get("action_at", "") + "+08:00 "
    return row


def to_csv(rows: list[dict[str, str]], columns: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\r\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue().encode()


def generated(rnd: random.Random, ag1: list[str], ag2: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for i in range(14):
        rows = [spoil(rnd, good_row(rnd, ag1), ag2) if rnd.random() < 0.35 else good_row(rnd, ag1)
                for _ in range(rnd.randrange(1, 12))]
        files.append((f"r{i:02d}", to_csv(rows, COLUMNS)))
    header = ",".join(COLUMNS).encode()
    files += [
        ("all-foreign", to_csv([good_row(rnd, ag2) for _ in range(3)], COLUMNS)),
        ("empty", b""),
        ("header-only", header + b"\r\n"),
        ("unknown-column", to_csv([good_row(rnd, ag1)], [*COLUMNS, "cvv"])),
        ("missing-column", to_csv([good_row(rnd, ag1)], COLUMNS[:3] + COLUMNS[4:])),
        ("flags-column", to_csv([good_row(rnd, ag1)], [*COLUMNS, "flags"])),
        ("row-shape", header + b"\r\n" + to_csv([good_row(rnd, ag1)], COLUMNS).split(b"\r\n", 1)[1]
         + b"x,y\r\n\r\n"),
        ("bad-quote", to_csv([good_row(rnd, ag1)], COLUMNS) + b'C1,"unterminated\r\n'),
        ("bad-utf8", to_csv([good_row(rnd, ag1)], COLUMNS) + b"C1,\xff\xfe,CALL\r\n"),
        ("bom", b"\xef\xbb\xbf" + to_csv([good_row(rnd, ag1) for _ in range(2)], COLUMNS)),
        ("many-errors", to_csv([{**good_row(rnd, ag1), "action_code": "X", "collector_id": "!"}
                                for _ in range(600)], COLUMNS)),
    ]
    return files


def test_the_kit_finds_what_the_gateways_receipt_lists(world, tmp_path):
    site, kit, ag1, ag2 = world
    files = generated(random.Random(2026), ag1, ag2)
    cfg = kit_config(kit)
    predicted = {}
    from gateway.kit.ledger import open_ledger

    ledger = open_ledger(cfg.state_dir)
    try:
        for stem, data in files:
            path = tmp_path / f"{stem}.csv"
            path.write_bytes(data)
            predicted[stem] = kit_results.check_file(cfg, ledger, path, dt.datetime.now(dt.UTC))
            site.upload("AG001", f"{stem}.csv.pgp", data)
    finally:
        ledger.close()
    site.run()
    receipts = {r["file"].removesuffix(".csv.pgp"): r for r in site.agency_receipts("AG001").values()}
    for stem, _ in files:
        receipt, kit_view = receipts[stem], predicted[stem]
        assert [(e["row"], e["code"], e["field"]) for e in receipt["errors"]] == \
            [(e.row, e.code, e.field) for e in kit_view.errors.listed], stem
        assert receipt["errors_total"] == kit_view.errors.total, stem
        assert receipt["status"] == kit_view.status, stem
        assert [e["message"] for e in receipt["errors"]] == \
            [e.message for e in kit_view.errors.listed], stem
    assert receipts["many-errors"]["errors_total"] == 1200 and len(receipts["many-errors"]["errors"]) == 1000


def kit_config(kit: KitSite):
    from gateway.kit import config

    return config.load(kit.config)


def test_results_check_prints_the_errors_and_send_reaches_the_bank(world, tmp_path, capsys):
    site, kit, ag1, ag2 = world
    rnd = random.Random(5)
    rows = [good_row(rnd, ag1), {**good_row(rnd, ag1), "case_id": ag2[0]}]
    bad = tmp_path / "mixed.csv"
    bad.write_bytes(to_csv(rows, COLUMNS))
    code, out, err = kit.run("results", str(bad), "--check", capsys=capsys)
    assert code == 1
    assert "row 2: E_NOT_ASSIGNED case_id — case_id is not a case assigned to this agency" in out
    assert ag2[0] not in out.replace("row 2", "")  # the message, never the value
    code, out, err = kit.run("results", str(bad), capsys=capsys)
    assert code == 1 and "not sent" in err and kit.outbox() == []
    good = tmp_path / "clean-1.csv"
    good.write_bytes(to_csv([good_row(rnd, ag1) for _ in range(3)], COLUMNS))
    code, out, err = kit.run("results", str(good), capsys=capsys)
    assert code == 0, err
    assert "sent clean-1.csv.pgp" in out
    assert [p.name for p in kit.outbox()] == ["clean-1.csv.pgp"]
    assert list((kit.state / "outgoing").iterdir()) == []
    assert site.run() == {"accepted": 1}
    (receipt,) = [r for r in site.agency_receipts("AG001").values() if r["file"] == "clean-1.csv.pgp"]
    assert receipt["status"] == "accepted" and receipt["counts"]["accepted"] == 3
    code, _, err = kit.run("results", str(good), capsys=capsys)  # the same name twice
    assert code == 2 and "was sent at" in err
    # its receipt is for the supervisor role: this installation (collector) keeps it sealed
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "receipt clean-1.csv.pgp.receipt.json.pgp: kept encrypted" in out
    assert not any(n.endswith(".receipt.json.pgp") for n in site.inbox("AG001"))
    supervisor = KitSite(tmp_path / "kit2", site, kit.keys, roles=("supervisor",))
    site.upload("AG001", "clean-2.csv.pgp", good.read_bytes())
    site.run()
    code, out, err = supervisor.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "receipt for clean-2.csv.pgp: accepted, 0 error(s)" in out
    assert supervisor.ledger_rows("SELECT file, status, errors_total FROM receipts") == [
        ("clean-2.csv.pgp", "accepted", 0)]


def test_force_sends_the_valid_rows_but_never_a_file_rejected_whole(world, tmp_path, capsys):
    site, kit, ag1, ag2 = world
    rnd = random.Random(8)
    mixed = tmp_path / "forced.csv"
    mixed.write_bytes(to_csv([good_row(rnd, ag1), {**good_row(rnd, ag1), "action_code": "X"}],
                             COLUMNS))
    code, out, err = kit.run("results", str(mixed), "--force", capsys=capsys)
    assert code == 1 and "row 2: E_ACTION_CODE action_code" in out and "sent forced.csv.pgp" in out
    foreign = tmp_path / "foreign.csv"
    foreign.write_bytes(to_csv([good_row(rnd, ag2)], COLUMNS))
    code, out, err = kit.run("results", str(foreign), "--force", capsys=capsys)
    assert code == 1 and "the gateway would answer: rejected" in out and "not sent" in err
    assert [p.name for p in kit.outbox()] == ["forced.csv.pgp"]
    site.run()
    (receipt,) = [r for r in site.agency_receipts("AG001").values() if r["file"] == "forced.csv.pgp"]
    assert receipt["status"] == "partial" and receipt["counts"]["accepted"] == 1


@pytest.fixture
def fresh(tmp_path, keybox):
    """A site and a kit of their own (the module's world is shared)."""
    site = Site(tmp_path / "site", keybox)
    site.records = list(synth.cases(8, ["AG001", "AG002"], seed=26))
    site.drop_cases("B1.csv.pgp", site.records)
    assert site.run() == {"accepted": 1}
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch")[0] == 0
    for p in kit.outbox():
        p.unlink()
    return site, kit, [r["case_id"] for r in site.records if r["agency_code"] == "AG001"]


def one_row(case_id: str, collector: str) -> str:
    return ("case_id,action_at,action_code,contact_target,collector_id\r\n"
            f"{case_id},2026-11-19T10:00:00,CALL,debtor,{collector}\r\n")


def test_a_corrected_file_is_sent_not_the_sealed_one_a_failed_upload_left(fresh, tmp_path, capsys,
                                                                         monkeypatch):
    from gateway.kit import send as kit_send
    from gateway.transfer.base import ZoneUnavailable

    _site, kit, ag1 = fresh
    r = tmp_path / "r-1.csv"
    r.write_text(one_row(ag1[0], "WRONG"))
    real = kit_send.upload

    def down(*a, **k):
        raise ZoneUnavailable("outbox: server unreachable")

    monkeypatch.setattr(kit_send, "upload", down)
    code, _, err = kit.run("results", str(r), capsys=capsys)
    assert code == 1 and "unreachable" in err
    monkeypatch.setattr(kit_send, "upload", real)
    r.write_text(one_row(ag1[0], "RIGHT"))  # corrected, same name
    code, out, err = kit.run("results", str(r), capsys=capsys)
    assert code == 0 and "sent r-1.csv.pgp" in out, err
    (sent,) = kit.outbox()
    body = kit.open_for_gateway(sent)
    assert b"RIGHT" in body and b"WRONG" not in body
    assert kit.ledger_rows("SELECT COUNT(*) FROM documents WHERE kind = 'results'") == [(1,)]


def test_a_changed_file_is_refused_when_the_old_version_may_be_in_the_outbox(
        fresh, tmp_path, capsys, monkeypatch):
    from gateway.kit import ledger as kit_ledger

    _site, kit, ag1 = fresh
    r = tmp_path / "r-2.csv"
    r.write_text(one_row(ag1[0], "OLD"))

    def killed(self, doc_id, at):
        raise KeyboardInterrupt  # uploaded, not recorded

    monkeypatch.setattr(kit_ledger.KitLedger, "mark_uploaded", killed)
    assert kit.run("results", str(r), capsys=capsys)[0] == 130
    monkeypatch.undo()
    r.write_text(one_row(ag1[0], "NEW-AND-LONGER"))
    code, _, err = kit.run("results", str(r), capsys=capsys)
    assert code == 2 and "may already be in the outbox" in err and "give it a new name" in err
    (sent,) = kit.outbox()
    assert b"OLD" in kit.open_for_gateway(sent)


def test_results_after_destroy_say_why_instead_of_listing_every_row(fresh, tmp_path, capsys):
    _site, kit, ag1 = fresh
    kit.end_contract()
    code, out, _ = kit.run("destroy", "--dry-run", capsys=capsys)
    assert "send the contract's last results before destroying" in out
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    r = tmp_path / "late.csv"
    r.write_text(one_row(ag1[0], "c1"))
    code, out, err = kit.run("results", str(r), "--check", capsys=capsys)
    assert code == 1 and "E_NOT_ASSIGNED" not in out
    assert "data was destroyed" in err and "can no longer check or send results" in err
