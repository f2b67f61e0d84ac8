"""The embedded shell: ingest -> segment -> classify in one process, on a local directory.

It calls the very same stage objects as the workers, through :func:`run_stage`, following
each stage's outbound messages by routing key instead of through RabbitMQ.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from covidct_core.error_records import write_error
from covidct_core.errors import PermanentError
from covidct_core.messages import RESULT_READY, Message, new_message_id, utc_now_iso
from covidct_core.stage import Outbound, Stage, run_stage
from covidct_core.storage import LocalStore

log = structlog.get_logger()


@dataclass
class SeriesReport:
    """What happened to one series in an embedded run."""

    series_uid: str
    status: str  # "done", "skipped", "rejected"
    code: str | None = None
    reason: str = ""
    result: Message | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class EmbeddedPipeline:
    """Routes outbound messages to in-process stages by the first word of the routing key."""

    work: LocalStore
    stages: dict[str, Stage]
    on_stage: Callable[[str, str], None] = lambda stage, series: None

    def run(self, first: Outbound) -> Iterator[Message]:
        """Follow ``first`` through the stages; yield terminal messages (e.g. result-ready)."""
        pending = [first]
        while pending:
            item = pending.pop(0)
            stage = self.stages.get(item.routing_key.split(".")[0])
            if stage is None:
                yield item.message
                continue
            self.on_stage(stage.name, str(item.message.get("series_instance_uid", "")))
            try:
                pending.extend(run_stage(stage, item.message, self.work).outbound)
            except PermanentError as e:
                body = json.dumps(item.message, sort_keys=True).encode()
                write_error(self.work, stage.name, e.code, e.reason, e.inputs, item.message, body)
                raise


def export_series(
    work: LocalStore, result: Message, target: Path, extra_files: dict[str, str]
) -> None:
    """Copy a finished series' objects to ``target`` under their user-facing names."""
    target.mkdir(parents=True, exist_ok=True)
    for name, key in extra_files.items():
        if work.head(key) is not None:
            shutil.copyfile(work.root / key, target / name)


def write_error_json(target: Path, code: str, reason: str, extra: dict[str, Any]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    record = {"code": code, "reason": reason, "at": utc_now_iso(), **extra}
    (target / "error.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def is_result(message: Message) -> bool:
    return message.get("schema") == RESULT_READY


def correlation() -> str:
    return new_message_id()
