"""Error objects written under ``errors/`` for every permanently rejected input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from covidct_core.messages import Message, ObjectRef, utc_now_iso
from covidct_core.storage import ObjectStore


def error_key(message: Message | None, body: bytes) -> str:
    """``errors/<job_id>.json`` when the message names a job, else a hash of the body."""
    job_id = message.get("job_id") if isinstance(message, dict) else None
    if isinstance(job_id, str) and job_id:
        return f"errors/{job_id}.json"
    return f"errors/body-{hashlib.sha256(body).hexdigest()[:24]}.json"


def error_record(
    stage: str, code: str, reason: str, inputs: Sequence[str], message: Message | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "code": code,
        "reason": reason,
        "stage": stage,
        "inputs": list(inputs),
        "at": utc_now_iso(),
    }
    if isinstance(message, dict):
        for name in ("job_id", "series_instance_uid", "study_instance_uid", "correlation_id"):
            if message.get(name):
                record[name] = message[name]
    return record


def write_error(
    store: ObjectStore,
    stage: str,
    code: str,
    reason: str,
    inputs: Sequence[str],
    message: Message | None,
    body: bytes,
) -> ObjectRef:
    record = error_record(stage, code, reason, inputs, message)
    data = json.dumps(record, indent=2, sort_keys=True).encode()
    info = store.put_bytes(error_key(message, body), data, {"content-type": "application/json"})
    return ObjectRef(store.bucket, info.key, info.size, info.sha256 or "")
