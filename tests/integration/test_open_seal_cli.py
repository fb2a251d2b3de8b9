"""`gateway seal` / `gateway open` against plain GnuPG, in both directions."""

from __future__ import annotations

import pytest

from gateway.crypto import keys
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


def encryption_keyid(keybox, name: str) -> str:
    info = keys.inspect(keybox[name].pub)
    return next(k.fingerprint[-16:] for k in info.keys if "e" in k.capabilities)


@pytest.mark.parametrize(("case", "code"), [
    ("unsigned", "E_UNSIGNED"),
    ("unknown_signer", "E_UNKNOWN_SIGNER"),
    ("own_signature", "E_UNKNOWN_SIGNER"),
    ("wrong_recipient", "E_NOT_FOR_US"),
    ("sent_to_gateway", "E_NOT_FOR_US"),
    ("tampered", "E_CORRUPT"),
    ("truncated", "E_TRUNCATED"),
    ("key_file", "E_CORRUPT"),
    ("plaintext", "E_CORRUPT"),
])
def test_gateway_open_refuses_and_leaves_nothing(tmp_path, keybox, case, code):
    name = "in.pgp"
    if case == "unsigned":
        data = gateway_made(keybox, RESULTS, sign=False)
    elif case == "unknown_signer":
        data = gateway_made(keybox, RESULTS, signer="other")
    elif case == "own_signature":
        data = gateway_made(keybox, RESULTS, signer="ag001-collector")
    elif case == "wrong_recipient":  # another role's slice
        name = "B20261102-01.AG001.supervisor.csv.pgp"
        data = gateway_made(keybox, RESULTS, to="ag001-supervisor")
    elif case == "sent_to_gateway":  # a file sealed for the gateway, not from it
        data = gateway_made(keybox, RESULTS, signer="ag001", to="gateway")
    elif case in ("tampered", "truncated"):
        raw = bytearray(gateway_made(keybox, RESULTS * 20))
        if case == "tampered":
            raw[len(raw) // 2] ^= 0x10
        else:
            del raw[len(raw) * 2 // 3:]
        data = bytes(raw)
    elif case == "key_file":
        data = keybox["gateway"].pub.read_bytes()
    else:
        data = RESULTS
    f = tmp_path / name
    f.write_bytes(data)
    out = tmp_path / "out.csv"
    proc = subprocess_open(f, keybox, "--out", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(f"error: {code}:")
    assert not out.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p != f
                 and RESULTS[:20] in p.read_bytes()]
    assert leftovers == []
    assert [p for p in live_gpg_processes("gwo") if p] == []
    said = proc.stderr
    gateway = keybox["gateway"].fingerprint
    expected = {
        "unsigned": ["is not signed", "nothing was written"],
        "unknown_signer": [f"signed by key ID {keybox['other'].fingerprint[-16:]}",
                           f"not by the gateway key given with --from, {gateway}"],
        "own_signature": ["signed by your own key", "a file you sealed"],
        "wrong_recipient": [f"{name} is not encrypted to your key (ag001-collector <",
                            f"encryption key ID {encryption_keyid(keybox, 'ag001-collector')})",
                            f"sealed for key ID {encryption_keyid(keybox, 'ag001-supervisor')}",
                            "agency AG001's supervisor slice"],
        "sent_to_gateway": [f"sealed for the gateway's key {gateway}",
                            "only the gateway can open"],
        "tampered": ["changed after it was encrypted"],
        "truncated": ["the download was cut short"],
        "key_file": ["is a key file, not a file from the gateway"],
        "plaintext": ["is not an OpenPGP message"],
    }[case]
    for words in expected:
        assert words in said, said


def test_open_with_the_key_files_swapped_says_which_option_is_wrong(tmp_path, keybox):
    f = tmp_path / "in.pgp"
    f.write_bytes(gateway_made(keybox, RESULTS))
    proc = run_cli("open", str(f), "--key", str(keybox["gateway"].pub), "--from",
                   str(keybox["ag001-collector"].sec))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --key: ") and "your own secret key file" in proc.stderr


def test_seal_refuses_a_file_that_is_already_sealed(tmp_path, keybox):
    f = tmp_path / "results.csv.pgp"
    f.write_bytes(gateway_made(keybox, RESULTS, signer="ag001", to="gateway"))
    proc = run_cli("seal", str(f), "--key", str(keybox["ag001"].sec),
                   "--to", str(keybox["gateway"].pub))
    assert proc.returncode == 2 and "already an encrypted OpenPGP message" in proc.stderr
    assert not (tmp_path / "results.csv.pgp.pgp").exists()


def test_open_with_world_readable_key_is_refused(tmp_path, keybox):
    import shutil

    key = tmp_path / "k.sec.asc"
    shutil.copy(keybox["ag001-collector"].sec, key)
    key.chmod(0o640)
    f = tmp_path / "in.pgp"
    f.write_bytes(gateway_made(keybox, RESULTS))
    proc = run_cli("open", str(f), "--key", str(key), "--from", str(keybox["gateway"].pub))
    assert proc.returncode == 2 and "mode 0640" in proc.stderr
