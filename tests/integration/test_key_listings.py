"""What gpg said of each key file, kept by the daemon between starts (``keys.Listings``)."""

from __future__ import annotations

import json
import shutil

import pytest

from gateway.crypto import _gpg, keys
from gateway.errors import KeyPolicyError

pytestmark = pytest.mark.integration


def test_a_key_file_is_asked_of_gpg_once_and_judged_again_every_time(tmp_path, keybox,
                                                                       monkeypatch):
    store = tmp_path / "keys.listed.json"
    key = tmp_path / "bank.pub.asc"
    shutil.copy(keybox["bank"].pub, key)
    first = keys.Listings(store)
    info = keys.check(key, keys.Purpose.VERIFY, first)
    first.save()
    assert json.loads(store.read_text())["version"] == keys.Listings.VERSION

    def no_gpg() -> None:
        raise AssertionError("gpg was asked again")

    monkeypatch.setattr(_gpg, "scratch_home", no_gpg)
    again = keys.Listings(store)
    assert keys.check(key, keys.Purpose.VERIFY, again) == info  # from the listing kept
    # the policy is applied again to the listing: a public key is still no secret key
    with pytest.raises(KeyPolicyError, match="holds no secret key"):
        keys.check(key, keys.Purpose.GATEWAY, again)
    monkeypatch.undo()
    shutil.copy(keybox["revoked"].pub, key)  # other bytes: asked of gpg again
    with pytest.raises(keys.KeyRefused, match="revoked"):
        keys.check(key, keys.Purpose.VERIFY, again)
    again.save()
    third = keys.Listings(store)  # a start that reads only the revoked file ...
    with pytest.raises(keys.KeyRefused):
        keys.check(key, keys.Purpose.VERIFY, third)
    third.save()  # ... keeps only that listing: the file does not grow
    assert len(json.loads(store.read_text())["listings"]) == 1


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 0, "listings": {}}',
                                     b'{"version": 1, "listings": []}'])
def test_a_damaged_listing_file_is_read_as_empty(tmp_path, keybox, content):
    store = tmp_path / "keys.listed.json"
    store.write_bytes(content)
    listings = keys.Listings(store)
    assert keys.check(keybox["bank"].pub, keys.Purpose.VERIFY, listings).fingerprint == \
        keybox["bank"].fingerprint
    listings.save()
    assert len(json.loads(store.read_text())["listings"]) == 1
    assert store.stat().st_mode & 0o777 == 0o600


def test_a_file_gpg_cannot_read_is_not_kept(tmp_path):
    store = tmp_path / "keys.listed.json"
    junk = tmp_path / "junk.asc"
    junk.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n")
    listings = keys.Listings(store)
    with pytest.raises(KeyPolicyError, match="not an OpenPGP key file"):
        keys.check(junk, keys.Purpose.VERIFY, listings)
    listings.save()
    assert not store.exists()


def test_a_listing_file_not_the_gateways_own_is_read_as_empty(tmp_path, keybox):
    """A FIFO once hung `audit verify`; a deep nest of brackets is a RecursionError; a
    link, a file others may write, one of another user or another gpg's: none is read."""
    import os

    store = tmp_path / "keys.listed.json"
    good = keys.Listings(store)
    keys.check(keybox["bank"].pub, keys.Purpose.VERIFY, good)
    good.save()
    kept = store.read_bytes()

    def read_as_empty() -> bool:
        return keys.Listings(store)._old == {}

    assert not read_as_empty()
    store.chmod(0o620)
    assert read_as_empty()
    store.unlink()
    (tmp_path / "elsewhere.json").write_bytes(kept)
    (tmp_path / "elsewhere.json").chmod(0o600)
    store.symlink_to(tmp_path / "elsewhere.json")
    assert read_as_empty()
    store.unlink()
    os.mkfifo(store)
    assert read_as_empty()  # and at once: a FIFO is not waited on
    store.unlink()
    store.write_bytes(b"[" * 100_000)
    assert read_as_empty()
    store.write_bytes(kept.replace(b'"gpg": "', b'"gpg": "/usr/local/bin/'))
    assert read_as_empty()  # another gpg may list a key otherwise


def test_a_key_gpg_called_expired_is_asked_again_at_every_start(tmp_path, keybox):
    """gpg judged it with its clock at the time; kept, that verdict would outlive a clock
    that was wrong when it was listed."""
    store = tmp_path / "keys.listed.json"
    listings = keys.Listings(store)
    with pytest.raises(keys.KeyRefused, match="expired"):
        keys.check(keybox["expired"].pub, keys.Purpose.VERIFY, listings)
    listings.save()
    assert not store.exists()
