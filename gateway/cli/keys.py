"""Key files (``gateway keys``) and the agency staff's two commands, ``open`` and
``seal``: what a person needs to take part in the exchange without running a gateway."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import JsonOpt, PassEnvOpt, err, out, render
from gateway.crypto import keys as keys_mod
from gateway.crypto.service import passphrase_from_env
from gateway.errors import UsageError

keys_app = typer.Typer(help="Create and inspect OpenPGP key files.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Argument(help="Key name; files NAME.pub.asc and NAME.sec.asc.")],
    email: Annotated[str, typer.Option("--email", help="Email address in the user ID.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the key files.")],
    algorithm: Annotated[str, typer.Option("--algo", help="ed25519, rsa3072 or rsa4096.")] = "ed25519",
    expire: Annotated[str, typer.Option("--expire", help="Validity, e.g. 2y, 18m, or 'never'.")] = "2y",
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Create a key pair (secret file mode 0600) without AEAD preferences, for interoperability."""
    passphrase = None
    if passphrase_env:
        secret = passphrase_from_env(passphrase_env)
        if secret is None:
            raise UsageError(f"--passphrase-env: environment variable {passphrase_env} is not set")
        passphrase = secret.reveal()
    key = keys_mod.generate(name, email, out_dir, algorithm=algorithm, expire=expire,
                            passphrase=passphrase)
    out.print(f"{key.fingerprint}  {key.public_path}  {key.secret_path} (mode 0600)")


@keys_app.command("show")
def keys_show(file: Annotated[Path, typer.Argument(help="An ASCII-armored key file.")],
              as_json: JsonOpt = False) -> None:
    """Show a key file's fingerprint, algorithm, capabilities, expiry and policy verdict."""
    from gateway import queries

    judged = queries.key_file_verdict(file)
    info = judged.info
    data: dict[str, Any] = {
        "file": str(file), "fingerprint": info.fingerprint, "secret": info.secret,
        "user_ids": list(info.user_ids), "revoked": info.revoked, "expired": info.expired,
        "expires": info.expires.isoformat() if info.expires else None,
        "policy": judged.verdict if judged.problems else "ok",
        "keys": [{"fingerprint": k.fingerprint, "algorithm": k.description,
                  "capabilities": k.capabilities, "created": k.created.isoformat(),
                  "expires": k.expires.isoformat() if k.expires else None,
                  "revoked": k.revoked, "expired": k.expired} for k in info.keys],
    }

    def text() -> None:
        out.print(f"{'secret' if info.secret else 'public'} key {info.fingerprint}")
        for uid in info.user_ids:
            out.print(f"  user id   {uid}")
        for k in info.keys:
            exp = k.expires.date().isoformat() if k.expires else "never"
            out.print(f"  {k.fingerprint[-16:]}  {k.description:<10} caps={k.capabilities:<4} "
                      f"expires={exp}  {queries.subkey_state(k)}")
        out.print(f"  policy    {judged.verdict}")

    render(data, as_json, text)


def open_cmd(
    file: Annotated[Path, typer.Argument(help="The .pgp file received from the gateway.")],
    key: Annotated[Path, typer.Option("--key", help="Your secret key file (mode 0600).")],
    sender: Annotated[Path, typer.Option("--from", help="The gateway's public key file.")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Decrypt a file from the gateway and verify the gateway's signature (for agency staff)."""
    from gateway.crypto.standalone import open_file

    _must_exist(file)
    verified, signer = open_file(file, key=key, sender=sender, out=out_path,
                                 stdout=sys.stdout.buffer, passphrase=passphrase_from_env(passphrase_env))
    uid = signer.user_ids[0] if signer.user_ids else ""
    err.print(f"good signature from {verified.fingerprint} {uid}".rstrip()
              + (f"; wrote {out_path}" if out_path else ""))


def seal_cmd(
    file: Annotated[Path, typer.Argument(help="The plaintext file to upload (e.g. results CSV).")],
    key: Annotated[Path, typer.Option("--key", help="Your secret signing key file (mode 0600).")],
    recipient: Annotated[Path, typer.Option("--to", help="The gateway's public key file.")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file (default FILE.pgp).")] = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Sign and encrypt a file for upload to the gateway (for agency staff)."""
    from gateway.crypto.standalone import seal_file

    _must_exist(file)
    target = out_path or file.with_name(file.name + ".pgp")
    me, them = seal_file(file, key=key, recipient=recipient, out=target,
                         passphrase=passphrase_from_env(passphrase_env))
    err.print(f"wrote {target}: signed by {me.fingerprint}, encrypted to {them.fingerprint}")


def _must_exist(file: Path) -> None:
    """A missing input is the person's slip (exit 2), told before gpg is started."""
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
