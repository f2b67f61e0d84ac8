"""``covidct submit PATH``: upload a folder or zip to the input bucket, then publish a manifest.

The manifest tells ingest that every object is in place, so the series needs no quiet-period
wait. Object keys are ``<prefix>/<relative path>``; zips are uploaded as they are (ingest
expands them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from covidct_core.messages import MANIFEST, Message, envelope, new_message_id
from covidct_core.storage import ObjectStore

Publish = Callable[[str, Message], None]


def files_to_upload(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def submit(
    path: Path,
    store: ObjectStore,
    publish: Publish,
    prefix: str | None = None,
    progress: bool = True,
) -> Message:
    """Upload ``path`` under ``prefix`` and publish the manifest; return the manifest."""
    files = files_to_upload(path)
    if not files:
        raise FileNotFoundError(f"nothing to upload under {path}")
    prefix = prefix or f"submit/{uuid.uuid4().hex[:12]}"
    base = path if path.is_dir() else path.parent
    keys: list[str] = []
    sizes: list[int] = []
    total = sum(f.stat().st_size for f in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=not progress) as bar:
        for file in files:
            key = f"{prefix}/{file.relative_to(base).as_posix()}"
            info = store.put_file(key, file)
            keys.append(key)
            sizes.append(info.size)
            bar.update(info.size)
    manifest = envelope(
        MANIFEST,
        bucket=store.bucket,
        prefix=prefix,
        keys=keys,
        sizes=sizes,
        correlation_id=new_message_id(),
    )
    publish("ingest.manifest", manifest)
    return manifest
