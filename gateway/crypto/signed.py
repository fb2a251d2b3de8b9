"""Checking documents the gateway clear-signed (deletion certificates, audit checkpoints)
with public keys only, in a throw-away keyring — what the console and `gateway audit
verify --key` do without ever touching the gateway's secret key."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gateway.crypto import keys
from gateway.crypto.engine import Engine
from gateway.crypto.keyring import Keyring


@contextlib.contextmanager
def signature_checker(key_files: Sequence[Path], *, secret: bool = False) -> Iterator[
        Callable[[bytes], bytes]]:
    """A function that returns the text of a document clear-signed by one of the keys in
    *key_files* (public key files, or — *secret* — the gateway's own key files, of which
    only the public part is used), in a throw-away keyring."""
    home = Path(tempfile.mkdtemp(prefix="gwv", dir="/tmp"))
    try:
        fprs = [keys.inspect(p).fingerprint for p in key_files]
        with Keyring(home / "g", secret_keys=key_files if secret else (),
                     public_keys=() if secret else key_files) as ring:
            engine = Engine(ring)
            yield lambda doc: engine.verify_clearsigned(doc, allowed_signers=fprs)[1]
    finally:
        shutil.rmtree(home, ignore_errors=True)
