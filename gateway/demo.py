"""``gateway demo``: a complete trial setup on the embedded default, exercised for real.

It builds a working directory with generated keys for the gateway, the bank and
two agencies (each with its roles), a config from ``gateway init``'s template,
and local zones; checks it; then shows the cryptographic path every file takes:
the bank seals a file with GnuPG, the gateway opens it and names the signer,
and the gateway seals a file that only one agency role can open.

The batch flow (validation, masking, slices, receipts) is added to this demo
when it lands; until then the demo says so rather than pretending.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from gateway import config as config_mod
from gateway import scaffold
from gateway.checks import run_checks
from gateway.crypto import _gpg, keys
from gateway.crypto.service import Crypto
from gateway.errors import GatewayError, UsageError

AGENCIES = [
    scaffold.AgencyTemplate("AG001", "Example Collections Co.", ("supervisor", "collector")),
    scaffold.AgencyTemplate("AG002", "Second Recovery Ltd.",
                            ("supervisor", "collector", "field_visitor")),
]


def run_demo(directory: Path, console: Console) -> None:
    directory = Path(directory)
    if (directory / "gateway.toml").exists():
        raise UsageError(f"{directory} already holds a demo; remove it or pass --dir NEW_DIR")
    console.print(f"[bold]1. Setup[/bold] in {directory}")
    config_path = scaffold.init_project(directory, agencies=AGENCIES)
    console.print(f"   wrote {config_path} (roles: supervisor, collector, field_visitor, analyst)")
    for name in scaffold.key_names(AGENCIES):
        key = keys.generate(name, f"{name}@demo.example", directory / "keys")
        console.print(f"   generated key {name:<22} {key.fingerprint}")

    console.print("[bold]2. gateway check[/bold]")
    cfg = config_mod.load(config_path)
    for f in run_checks(cfg):
        console.print(f"   {f.level:<5} {f.text}")

    console.print("[bold]3. The bank seals a file with GnuPG; the gateway opens and verifies it[/bold]")
    keydir = directory / "keys"
    sealed = _bank_seals(keydir, b"case_id,agency_code\nDEMO-1,AG001\n")
    with Crypto.start(cfg) as crypto:
        with crypto.open_from_bank(io.BytesIO(sealed)) as msg:
            size = sum(len(c) for c in msg.chunks())
            verified = msg.verdict()
        console.print(f"   {len(sealed)} bytes of ciphertext -> {size} bytes of plaintext (never on disk), "
                      f"signed by the bank's key {verified.fingerprint}")
        tampered = bytearray(sealed)
        tampered[len(tampered) // 2] ^= 0x01
        with crypto.open_from_bank(io.BytesIO(bytes(tampered))) as msg:
            try:
                msg.verdict()
                console.print("   [red]a tampered copy was accepted — this must not happen[/red]")
            except GatewayError as exc:
                console.print(f"   a copy with one flipped bit is refused: {exc.code} ({exc})")

        console.print("[bold]4. The gateway seals for one agency role only[/bold]")
        out = io.BytesIO()
        with crypto.seal_for_role("AG001", "collector", out) as w:
            w.write(b"only AG001's collectors can read this\n")
        slice_path = directory / "zones" / "AG001" / "inbox" / "demo.AG001.collector.txt.pgp"
        slice_path.write_bytes(out.getvalue())
    for role in ("collector", "supervisor"):
        ok = _agency_opens(keydir / f"ag001-{role}.sec.asc", keydir / "gateway.pub.asc", slice_path)
        console.print(f"   AG001 {role:<10} opens {slice_path.name}: {'yes' if ok else 'no'}")
    console.print("[bold]Not yet in this demo:[/bold] the batch flow (validation, masking, per-role "
                  "slices, receipts) — it arrives with its issue.")


def _bank_seals(keydir: Path, plaintext: bytes) -> bytes:
    """What the bank does on its side: plain GnuPG, its own secret key, the gateway's public key."""
    with _gpg.scratch_home() as home:
        for f in ("bank.sec.asc", "gateway.pub.asc"):
            _gpg.run(home, ["--import", str(keydir / f)], passphrase="")
        gw = keys.inspect(keydir / "gateway.pub.asc").fingerprint
        bank = keys.inspect(keydir / "bank.pub.asc").fingerprint
        proc = _gpg.run(home, ["-u", bank, "-r", gw, "--sign", "--encrypt"], stdin=plaintext,
                        passphrase="")
    if proc.returncode != 0:
        raise GatewayError("demo: GnuPG could not seal the bank's file")
    return proc.stdout


def _agency_opens(secret: Path, gateway_pub: Path, file: Path) -> bool:
    """Run `gateway open` as agency staff would; True if it decrypts and verifies."""
    tmp = Path(tempfile.mkdtemp(prefix="gwd"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "open", str(file), "--key", str(secret),
             "--from", str(gateway_pub),
             "--out", str(tmp / "plain.txt")], capture_output=True, check=False)
        return proc.returncode == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
