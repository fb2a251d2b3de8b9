"""`gateway seal` / `gateway open` against plain GnuPG, in both directions."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.gpgparty import GpgParty, live_gpg_processes, validsig_primary

pytestmark = pytest.mark.integration

RESULTS = "case_id,action_at,action_code\nC-1,2026-11-01T10:00:00,CALL\n联系人王五,,\n".encode()


def test_seal_by_agency_opens_in_plain_gpg(tmp_path, keybox):
    src = tmp_path / "results.csv"
    src.write_bytes(RESULTS)
    proc = run_cli("seal", str(src), "--key", str(keybox["ag001"].sec),
                   "--to", str(keybox["gateway"].pub))
    assert proc.returncode == 0, proc.stderr
    sealed = tmp_path / "results.csv.pgp"
    assert RESULTS not in sealed.read_bytes()
    party = GpgParty(keybox["gateway"].sec, keybox["ag001"].pub)
    try:
        body, status, rc = party.decrypt(sealed.read_bytes())
    finally:
        party.close()
    assert rc == 0 and body == RESULTS
    assert validsig_primary(status) == keybox["ag001"].fingerprint
    # never overwrites
    again = run_cli("seal", str(src), "--key", str(keybox["ag001"].sec),
                    "--to", str(keybox["gateway"].pub))
    assert again.returncode == 2 and "already exists" in again.stderr


def gateway_made(keybox, plaintext: bytes, *, signer: str = "gateway", to: str = "ag001-collector",
                 sign: bool = True) -> bytes:
    party = GpgParty(keybox[signer].sec, keybox[to].pub)
    try:
        return party.seal(plaintext, signer=keybox[signer].fingerprint if sign else None,
                          recipients=[keybox[to].fingerprint])
    finally:
        party.close()


def test_file_made_by_gpg_opens_with_gateway_open(tmp_path, keybox):
    f = tmp_path / "b1.AG001.collector.csv.pgp"
    f.write_bytes(gateway_made(keybox, RESULTS))
    proc = subprocess_open(f, keybox)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == RESULTS
    assert f"good signature from {keybox['gateway'].fingerprint}" in proc.stderr
    out = tmp_path / "plain.csv"
    proc = subprocess_open(f, keybox, "--out", str(out))
    assert proc.returncode == 0 and out.read_bytes() == RESULTS


def subprocess_open(f, keybox, *extra, key="ag001-collector"):
    return run_cli("open", str(f), "--key", str(keybox[key].sec), "--from",
                   str(keybox["gateway"].pub), *extra)


@pytest.mark.parametrize(("case", "code"), [
    ("unsigned", "E_UNSIGNED"),
    ("unknown_signer", "E_UNKNOWN_SIGNER"),
    ("wrong_recipient", "E_NOT_FOR_US"),
    ("tampered", "E_CORRUPT"),
])
def test_gateway_open_refuses_and_leaves_nothing(tmp_path, keybox, case, code):
    if case == "unsigned":
        data = gateway_made(keybox, RESULTS, sign=False)
    elif case == "unknown_signer":
        data = gateway_made(keybox, RESULTS, signer="other")
    elif case == "wrong_recipient":
        data = gateway_made(keybox, RESULTS, to="ag001-supervisor")
    else:
        raw = bytearray(gateway_made(keybox, RESULTS * 20))
        raw[len(raw) // 2] ^= 0x10
        data = bytes(raw)
    f = tmp_path / "in.pgp"
    f.write_bytes(data)
    out = tmp_path / "out.csv"
    proc = subprocess_open(f, keybox, "--out", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(f"error: {code}:")
    assert not out.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and RESULTS[:20] in p.read_bytes()]
    assert leftovers == []
    assert [p for p in live_gpg_processes("gwo") if p] == []


def test_open_with_world_readable_key_is_refused(tmp_path, keybox):
    import shutil

    key = tmp_path / "k.sec.asc"
    shutil.copy(keybox["ag001-collector"].sec, key)
    key.chmod(0o640)
    f = tmp_path / "in.pgp"
    f.write_bytes(gateway_made(keybox, RESULTS))
    proc = run_cli("open", str(f), "--key", str(key), "--from", str(keybox["gateway"].pub))
    assert proc.returncode == 2 and "mode 0640" in proc.stderr
