from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from covidct_core.errors import InvalidKeyError, ObjectNotFoundError
from covidct_core.storage import LocalStore, sha256_bytes


@pytest.mark.parametrize(
    "key",
    ["../escape", "a/../../escape", "/etc/passwd", "a/./b", "", "dir/", "a\\b", ".meta/x"],
)
def test_local_store_rejects_keys_that_escape_or_are_invalid(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "root")
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.get_bytes(key)
    assert not (tmp_path / "escape").exists()


def test_local_store_round_trip_with_sha256_and_listing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    info = store.put_bytes("volumes/j1/image.mha", b"abc", {"kind": "volume"})
    assert info.sha256 == sha256_bytes(b"abc")
    store.put_bytes("volumes/j2/image.mha", b"defg")
    store.put_bytes("masks/j1/lung.mha", b"m")
    head = store.head("volumes/j1/image.mha")
    assert head is not None and head.sha256 == info.sha256 and head.metadata["kind"] == "volume"
    assert store.get_range("volumes/j2/image.mha", 1, 2) == b"ef"
    keys = [item.key for item in store.list("volumes/")]
    assert keys == ["volumes/j1/image.mha", "volumes/j2/image.mha"]
    assert [i.key for i in store.list("volumes/", start_after="volumes/j1/image.mha")] == [
        "volumes/j2/image.mha"
    ]
    store.delete("volumes/j1/image.mha")
    assert store.head("volumes/j1/image.mha") is None
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("volumes/j1/image.mha")


def test_local_store_put_file_and_download(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "in.bin"
    source.write_bytes(b"0123456789" * 1000)
    info = store.put_file("a/b.bin", source)
    target = tmp_path / "out" / "b.bin"
    store.download_file("a/b.bin", target)
    assert target.read_bytes() == source.read_bytes()
    assert info.sha256 == sha256_bytes(source.read_bytes())


def test_objects_get_the_umask_permissions_not_0600(tmp_path: Path) -> None:
    """Files the store renames into place (results people open) follow the umask."""
    store = LocalStore(tmp_path)
    previous = os.umask(0o022)
    try:
        store.put_bytes("results/a.csv", b"x")
        assert store.put_bytes_if_absent("results/b.csv", b"y") is not None
        source = tmp_path / "source.bin"
        source.write_bytes(b"z")
        store.put_file("results/c.bin", source)
    finally:
        os.umask(previous)
    for name in ("a.csv", "b.csv", "c.bin"):
        assert stat.S_IMODE((tmp_path / "results" / name).stat().st_mode) == 0o644, name
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".tmp-")]


def test_rewrites_never_show_a_reader_a_half_written_object(tmp_path: Path) -> None:
    """An object rewritten over and over (a claim renewed) reads whole and heads with its
    metadata from another thread at every moment."""
    import threading

    store = LocalStore(tmp_path)
    store.put_bytes("claims/c", b'{"n": 0}', {"owner": "a"})
    stop = threading.Event()

    def rewrite() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            store.put_bytes("claims/c", f'{{"n": {n}}}'.encode(), {"owner": "a" * (n % 50)})

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(3000):
            assert store.get_bytes("claims/c").startswith(b'{"n": ')
            [info] = list(store.list("claims/"))
            assert info.sha256 is not None and "owner" in info.metadata
    finally:
        stop.set()
        writer.join()
