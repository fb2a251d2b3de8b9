"""The state directory split for several nodes: what is this node's, what is shared."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.state import State


def test_two_nodes_share_archive_staging_and_token_keys_but_not_their_own(tmp_path):
    a = State(tmp_path / "a", tmp_path / "shared")
    b = State(tmp_path / "b", tmp_path / "shared")
    assert a.archive == b.archive == tmp_path / "shared" / "archive"
    assert a.staging(7) == b.staging(7) and a.certificates == b.certificates
    assert a.node != b.node and a.node == State(tmp_path / "a", tmp_path / "shared").node
    assert a.token_secret("K-1") == b.token_secret("K-1")  # one key: the same tokens
    assert len(a.token_secret("K-1")) == 32
    assert (tmp_path / "a" / "audit" / "checkpoints").is_dir()
    assert not (tmp_path / "a" / "archive").exists()


def test_a_node_cleans_only_its_own_temporaries(tmp_path):
    a = State(tmp_path / "a", tmp_path / "shared")
    b = State(tmp_path / "b", tmp_path / "shared")
    mine, theirs = a.temporary("incoming"), b.temporary("incoming")
    mine.write_bytes(b"x")
    theirs.write_bytes(b"y")  # b is copying a file right now
    assert a.clean_temporaries() == 1
    assert not mine.exists() and theirs.exists()


def test_setting_shared_dir_on_a_node_with_files_in_state_dir_is_refused(tmp_path):
    alone = State(tmp_path / "a")
    alone.archived("f" * 64).write_bytes(b"ciphertext")
    with pytest.raises(GatewayError, match=r"gateway\.shared_dir: .* still holds files"):
        State(tmp_path / "a", tmp_path / "shared")
