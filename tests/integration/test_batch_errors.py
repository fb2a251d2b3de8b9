"""Every file-level error code of docs/formats.md §2/§7 through the real flow; hostile input never crashes."""

from __future__ import annotations

import json

import pytest

from gateway import synth
from tests.flowsite import Site

pytestmark = pytest.mark.integration

HEADER = ",".join(synth.CASE_COLUMNS).encode()


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


@pytest.fixture
def records():
    return list(synth.cases(6, ["AG001", "AG002"], seed=11))


def only_receipt(site):
    (receipt,) = site.receipts().values()
    return receipt


def csv_of(records, **kw):
    return synth.to_csv(records, **kw)


@pytest.mark.parametrize(("label", "make", "code"), [
    ("empty file", lambda r: b"", "E_EMPTY"),
    ("header only", lambda r: HEADER + b"\r\n", "E_NO_ROWS"),
    ("unknown column", lambda r: csv_of(r, columns=[*synth.CASE_COLUMNS, "wechat_id"]),
     "E_UNKNOWN_COLUMN"),
    ("forbidden column", lambda r: csv_of(r, columns=[*synth.CASE_COLUMNS, "cvv2"]),
     "E_FORBIDDEN_COLUMN"),
    ("missing column", lambda r: csv_of(r, columns=synth.CASE_COLUMNS[:-1]), "E_MISSING_COLUMN"),
    ("duplicate column", lambda r: csv_of(r, columns=[*synth.CASE_COLUMNS, "case_id"]),
     "E_DUPLICATE_COLUMN"),
    ("invalid utf-8", lambda r: csv_of(r) + b"\xff\xfe\xfa\r\n", "E_ENCODING"),
    ("NUL bytes", lambda r: csv_of(r).replace(b"CNY", b"C\0Y", 1), "E_CSV"),
    ("broken quoting", lambda r: csv_of(r) + b'"unterminated,\r\n', "E_CSV"),
    ("10 MB line", lambda r: csv_of(r) + b"x" * (10 * 1024 * 1024) + b"\r\n", "E_LINE_TOO_LONG"),
    ("a million columns", lambda r: b",".join([b"c"] * 1_000_000) + b"\r\n", "E_LINE_TOO_LONG"),
    ("short row", lambda r: csv_of(r) + b"only,three,fields\r\n", "E_ROW_SHAPE"),
    ("duplicate case id", lambda r: csv_of([*r, r[0]]), "E_DUPLICATE_CASE"),
])
def test_file_level_errors(site, records, label, make, code):
    site.drop("B1.csv.pgp", make(records))
    assert site.run() == {"rejected": 1}, label
    receipt = only_receipt(site)
    assert receipt["status"] == "rejected"
    assert code in {e["code"] for e in receipt["errors"]}, receipt["errors"]
    text = json.dumps(receipt, ensure_ascii=False)
    for r in records:
        for field in ("customer_name", "id_number", "mobile", "account_number", "home_address"):
            assert r[field] not in text
    assert site.inbox("AG001") == [] and site.inbox("AG002") == []
    assert site.plaintext_leaks(records) == []


def test_gb18030_with_mapped_headers(site, records):
    site.edit('encoding = "utf-8"', 'encoding = "gb18030"')
    site.edit('# customer_name = "客户姓名"', 'customer_name = "客户姓名"')
    site.drop("B1.csv.pgp", csv_of(records, headers={"customer_name": "客户姓名"}, encoding="gb18030"))
    assert site.run() == {"accepted": 1}
    rows = site.open_as("ag001-supervisor", site.zone("AG001", "inbox", "B1.AG001.supervisor.csv.pgp")).rows
    assert rows[1][rows[0].index("customer_name")] == records[0]["customer_name"]


def test_utf8_bom_is_accepted(site, records):
    site.drop("B1.csv.pgp", b"\xef\xbb\xbf" + csv_of(records))
    assert site.run() == {"accepted": 1}


def test_case_live_in_an_earlier_batch(site, records):
    site.drop("B1.csv.pgp", csv_of(records[:3]))
    site.run()
    site.drop("B2.csv.pgp", csv_of(records[2:]))
    assert site.run() == {"rejected": 1}
    receipt = site.receipts()["B2.csv.pgp.receipt.json.pgp"]
    assert [(e["code"], e["case_id"]) for e in receipt["errors"]] == [
        ("E_CASE_EXISTS", records[2]["case_id"])]


def test_contract_ended(site, records):
    import datetime as dt
    ended = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    text = site.config.read_text()
    start = text.index('code = "AG002"')
    head, tail = text[:start], text[start:]
    tail = tail.replace("# terminated_on = 2026-06-30", f"terminated_on = {ended}", 1)
    site.config.write_text(head + tail)
    site.drop("B1.csv.pgp", csv_of(records))
    assert site.run() == {"rejected": 1}
    codes = {(e["code"], e["row"]) for e in only_receipt(site)["errors"]}
    assert codes == {("E_CONTRACT_ENDED", i) for i in (2, 4, 6)}


def test_tampered_ciphertext(site, records):
    path = site.drop("B1.csv.pgp", csv_of(records * 1))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    assert site.run() == {"rejected": 1}
    assert only_receipt(site)["errors"][0]["code"] == "E_CORRUPT"


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
@pytest.mark.parametrize("keep", [0.03, 0.5, 0.9])
def test_truncated_message_says_so(site, records, armor, keep):
    """A cut-off upload is not "tampered": it gets E_TRUNCATED, and the tampered one above
    stays E_CORRUPT."""
    path = site.drop("B1.csv.pgp", csv_of(records * 1), extra=("--armor",) if armor else ())
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    assert site.run() == {"rejected": 1}
    err = only_receipt(site)["errors"][0]
    assert err["code"] == "E_TRUNCATED" and "upload complete" in err["message"]


def test_compression_bomb(site):
    site.edit("max_daily_attempts = 6", "max_daily_attempts = 6\nmax_plaintext_mb = 1")
    site.drop("B1.csv.pgp", HEADER + b"\r\n" + b"\0" * (8 * 1024 * 1024),
              extra=("--compress-algo", "bzip2", "-z", "9"))
    assert site.run() == {"rejected": 1}
    assert only_receipt(site)["errors"][0]["code"] == "E_TOO_LARGE"


def test_revoked_bank_key_in_config_is_refused_at_start(site):
    import shutil
    shutil.copy(site.keys["revoked"].pub, site.root / "keys" / "bank.pub.asc")
    from gateway.errors import ConfigError
    with pytest.raises(ConfigError, match="revoked"):
        site.run()


def test_a_key_revoked_after_a_start_is_refused_at_the_next(site):
    """The daemon keeps what gpg said of each key file (by its bytes) to start faster; a
    key file replaced by its revocation is other bytes, read again and refused."""
    import shutil
    assert site.run() == {}
    assert (site.root / "var" / "keys.listed.json").exists()
    shutil.copy(site.keys["revoked"].pub, site.root / "keys" / "bank.pub.asc")
    from gateway.errors import ConfigError
    with pytest.raises(ConfigError, match="revoked"):
        site.run()


def test_a_gb18030_export_read_as_utf8_names_the_setting(site, records):
    """`E_ENCODING — a line is not valid utf-8 text` left the bank guessing; the message
    now names the other encoding and the setting that chooses it."""
    site.drop("B1.csv.pgp", csv_of(records, encoding="gb18030"))
    assert site.run() == {"rejected": 1}
    (error,) = only_receipt(site)["errors"]
    assert error["code"] == "E_ENCODING"
    assert error["message"] == ("a line is not valid utf-8 text; if the bank's export uses "
                                "another encoding (e.g. gb18030), set schema.encoding")


def test_results_that_are_not_utf8_name_no_setting(site, records):
    """Results are UTF-8 whatever the bank's schema says: no setting to point an agency to."""
    site.drop("B1.csv.pgp", csv_of(records))
    assert site.run() == {"accepted": 1}
    header = "case_id,action_at,action_code,contact_target,outcome,amount,promise_date," \
             "new_mobile,new_address,note,collector_id\r\n"
    mine = next(r["case_id"] for r in records if r["agency_code"] == "AG001")
    body = f"{mine},2026-01-05T10:00:00,CALL,debtor,已接通,,,,,,c1\r\n"
    site.upload("AG001", "R1.csv.pgp", (header + body).encode("gb18030"))
    assert site.run() == {"rejected": 1}
    (receipt,) = [r for r in site.agency_receipts("AG001").values() if r["status"] == "rejected"]
    (error,) = receipt["errors"]
    assert error == {**error, "code": "E_ENCODING", "message": "a line is not valid utf-8 text"}


@pytest.mark.parametrize("per_chunk", [2, 3, 8192])
def test_repeated_and_live_case_ids_across_chunks(site, records, monkeypatch, per_chunk):
    """Case ids seen before in the file (in an earlier chunk or the same one) and ids live
    in an earlier batch, in chunks of a few rows: each row told apart as it was when every
    chunk was looked up first (the first of a repeated id is kept), and the same rows
    delivered, whatever the chunks."""
    from gateway.flows import batch_rows

    monkeypatch.setattr(batch_rows, "ROWS_PER_CHUNK", per_chunk)
    site.edit('on_invalid = "reject_batch"', 'on_invalid = "skip_rows"')
    site.drop("B1.csv.pgp", csv_of(records[:2]))
    assert site.run() == {"accepted": 1}
    r = records
    again = [r[2], r[3], r[2], r[0], r[4], r[4], r[5], r[1], r[3], r[5]]  # rows 1..10
    site.drop("B2.csv.pgp", csv_of(again))
    assert site.run() == {"partial": 1}
    receipt = site.receipts()["B2.csv.pgp.receipt.json.pgp"]
    assert [(e["row"], e["code"], e["case_id"]) for e in receipt["errors"]] == [
        (3, "E_DUPLICATE_CASE", r[2]["case_id"]), (4, "E_CASE_EXISTS", r[0]["case_id"]),
        (6, "E_DUPLICATE_CASE", r[4]["case_id"]), (8, "E_CASE_EXISTS", r[1]["case_id"]),
        (9, "E_DUPLICATE_CASE", r[3]["case_id"]), (10, "E_DUPLICATE_CASE", r[5]["case_id"])]
    assert receipt["counts"]["accepted"] == 4 and receipt["counts"]["rejected"] == 6
    delivered = set()
    for code in ("AG001", "AG002"):
        name = f"B2.{code}.supervisor.csv.pgp"
        if name in site.inbox(code):
            delivered |= {row[0] for row in site.open_as(f"{code.lower()}-supervisor",
                                                          site.zone(code, "inbox", name)).rows[1:]}
    assert delivered == {r[i]["case_id"] for i in (2, 3, 4, 5)}
