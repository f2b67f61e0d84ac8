"""The distributed ingest stage: index objects, then assemble each series when it is quiet.

Messages it accepts:
- object-event (MinIO notification, bucket poller): index each object's header, then
  schedule a delayed series check (the quiet period) for every series touched;
- manifest (``covidct submit``): when it lists the instances of one series, assemble them
  at once in this handler, each object read once (no index, no quiet wait, no series
  check); otherwise index every listed object and check at once (no quiet wait);
- series-check: if no newer instance arrived since it was scheduled, assemble the series,
  write ``volumes/<job_id>/image.mha`` and ``series.json`` and publish series-ready.

All state lives in the work bucket (the index, claims, completion records), never in memory,
so any replica can take any message. Several checks of one instance set may pass at once
(duplicate announcements, redeliveries); a conditional-PUT claim (:mod:`covidct_ingest.claims`)
lets exactly one of them assemble, the others look again after the quiet period (a deferred
check, ``attempt`` > 0); a failed assembly gives its claim up. A job is recorded as done under
``done/ingest/series/<job_id>``; the same instance set arriving again re-publishes the same
series-ready and nothing else, and a deferred check that finds the job done publishes nothing
(the claim's owner did, or its redelivery will).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from covidct_core.errors import CovidCtError, PermanentError
from covidct_core.messages import (
    MANIFEST,
    OBJECT_EVENT,
    SERIES_CHECK,
    Message,
    envelope,
    new_message_id,
    utc_now_iso,
)
from covidct_core.stage import Outbound, completion_record_key, read_record, write_record
from covidct_core.storage import ObjectStore
from covidct_ingest import codes
from covidct_ingest.archive import is_zip_bytes, iter_zip_members
from covidct_ingest.claims import ClaimHeartbeat, claim_job, release_claim
from covidct_ingest.config import DEFAULT_CONFIG, IngestConfig
from covidct_ingest.convert import convert_series, read_instance_header
from covidct_ingest.grouping import compute_job_id, series_key_of
from covidct_ingest.headers import InstanceHeader, parse_header
from covidct_ingest.index import (
    IndexEntry,
    SourceObject,
    index_instance,
    read_header,
    read_prefix,
    read_series_index,
)
from covidct_ingest.io_pool import IoPool
from covidct_ingest.selection import select_series
from covidct_ingest.series_ready import write_volume

log = structlog.get_logger()

MIN_RECHECK_SECONDS = 2.0
ENVELOPE_FIELDS = ("schema", "message_id", "created_at", "attempt")

StoreForBucket = Callable[[str], ObjectStore]


@dataclass(frozen=True)
class SeriesJob:
    """One job to assemble: its id, its instances' headers, how to fetch their bytes,
    whether those headers were parsed from the very bytes fetched (else the fetched bytes
    are parsed again), when its instances were first seen, and when its handler started
    (the series-ready's ``ingest`` timing runs from there)."""

    job_id: str
    headers: list[InstanceHeader]
    fetch: Callable[[], list[tuple[str, bytes]]]
    headers_of_fetched: bool
    first_seen_at: str
    started: float


@dataclass
class IngestStage:
    """Implements :class:`covidct_core.stage.Stage` for ingest."""

    work: ObjectStore
    store_for_bucket: StoreForBucket
    config: IngestConfig = DEFAULT_CONFIG
    quiet_period: float = 10.0
    timer: Callable[[], float] = time.perf_counter
    # a claim not renewed for this long without a completion record is taken as abandoned
    # (its owner renews it every quarter lease while assembling)
    claim_lease: float = 60.0
    # object reads and index writes overlap on this many threads
    io_threads: int = 16
    # a manifest of one series up to this size is assembled directly (read whole, in memory)
    direct_max_bytes: int = 256 * 1024 * 1024

    name: str = "ingest"
    accepts: tuple[str, ...] = (OBJECT_EVENT, MANIFEST, SERIES_CHECK)

    def __post_init__(self) -> None:
        self.pool = IoPool(self.io_threads)

    # -- Stage protocol --------------------------------------------------------------------
    def completion_key(self, message: Message) -> str | None:
        if message["schema"] == SERIES_CHECK:
            return None  # assembly records completion per job (the job id needs the index)
        objects = self._objects_of(message)
        digest = hashlib.sha256(
            json.dumps(sorted((o.bucket, o.key, o.etag, o.size) for o in objects)).encode()
        ).hexdigest()[:32]
        return completion_record_key("ingest", "objects", digest)

    def handle(self, message: Message) -> list[Outbound]:
        if message["schema"] == SERIES_CHECK:
            return self._check_series(message)
        forced = message["schema"] == MANIFEST
        if forced:
            direct = self._assemble_listed(message)
            if direct is not None:
                return direct
        return self._index_objects(
            self._objects_of(message), message.get("correlation_id") or new_message_id(), forced
        )

    # -- indexing --------------------------------------------------------------------------
    @staticmethod
    def _objects_of(message: Message) -> list[SourceObject]:
        if message["schema"] == MANIFEST:
            return [
                SourceObject(message["bucket"], key, int(size), "")
                for key, size in zip(message["keys"], message["sizes"], strict=True)
            ]
        return [
            SourceObject(o["bucket"], o["key"], int(o["size"]), str(o.get("etag", "")))
            for o in message["objects"]
        ]

    def _index_objects(
        self, objects: Sequence[SourceObject], correlation_id: str, forced: bool
    ) -> list[Outbound]:
        touched: dict[str, IndexEntry | None] = {}
        failures: list[PermanentError] = []
        for source, outcome in zip(objects, self.pool.map(self._try_index, objects), strict=True):
            if isinstance(outcome, PermanentError):
                if self._set_aside(source, outcome):
                    failures.append(outcome)
                continue
            for entry_series, entry in outcome:
                if entry is not None or forced:
                    newest = touched.get(entry_series)
                    if newest is None or (entry and entry.generation > newest.generation):
                        touched[entry_series] = entry
        if failures and not touched and len(failures) == len(objects) and not forced:
            first = failures[0]
            raise PermanentError(first.code, first.reason, [o.key for o in objects]) from first
        return [
            Outbound(
                "ingest.assemble",
                envelope(
                    SERIES_CHECK,
                    series_key=series_key,
                    generation=entry.generation if entry else "",
                    correlation_id=correlation_id,
                    force=forced,
                ),
                delay_seconds=0.0 if forced else self.quiet_period,
            )
            for series_key, entry in sorted(touched.items())
        ]

    def _try_index(
        self, source: SourceObject
    ) -> list[tuple[str, IndexEntry | None]] | PermanentError:
        """:meth:`_index_object`, with a permanent error returned (it concerns this object
        only) rather than raised."""
        try:
            return self._index_object(source)
        except PermanentError as e:
            return e

    def _index_object(self, source: SourceObject) -> list[tuple[str, IndexEntry | None]]:
        """Index one object (a DICOM instance, or every member of a zip archive)."""
        store = self.store_for_bucket(source.bucket)
        prefix = read_prefix(store, source)
        if is_zip_bytes(prefix):
            return self._index_zip(store, source)
        header = read_header(store, source, prefix)
        entry = index_instance(self.work, header, source)
        return [(series_key_of(header)[0], entry)]

    def _index_zip(
        self, store: ObjectStore, source: SourceObject
    ) -> list[tuple[str, IndexEntry | None]]:
        archive = store.get_bytes(source.key)
        digest = hashlib.sha256(archive).hexdigest()[:16]
        results: list[tuple[str, IndexEntry | None]] = []
        for name, data in iter_zip_members(archive):
            try:
                header = parse_header(data)
            except PermanentError as e:
                log.warning("zip_member_unusable", stage="ingest", member=name, code=e.code)
                continue
            member_key = f"extracted/{digest}/{name}"
            info = self.work.put_bytes(member_key, data)
            member = SourceObject(self.work.bucket, member_key, info.size, info.sha256 or "")
            results.append((series_key_of(header)[0], index_instance(self.work, header, member)))
        return results

    def _set_aside(self, source: SourceObject, error: PermanentError) -> bool:
        """Leave out an object that is no DICOM instance: a DICOMDIR is only logged (False),
        anything else recorded under ``errors/`` as unusable (True)."""
        if error.code == codes.DICOMDIR:
            log.info("dicomdir_ignored", stage="ingest", key=source.key)
            return False
        digest = hashlib.sha256(f"{source.bucket}/{source.key}".encode()).hexdigest()[:24]
        record = {
            "code": error.code,
            "reason": error.reason,
            "stage": "ingest",
            "inputs": [f"{source.bucket}/{source.key}"],
            "at": utc_now_iso(),
        }
        self.work.put_bytes(f"errors/object-{digest}.json", json.dumps(record).encode())
        log.warning("object_unusable", stage="ingest", code=error.code, key=source.key)
        return True

    # -- assembly --------------------------------------------------------------------------
    def _assemble_listed(self, message: Message) -> list[Outbound] | None:
        """The whole job of a manifest that lists the instances of one series (what
        ``covidct submit`` of a series folder sends), in this handler: each object is read
        once, whole, and the series assembled from those bytes, with no index entries, no
        series-check hop and no second read. Objects that are not DICOM are recorded as
        unusable and left out, as indexing would. None when the manifest needs the general
        path: archives, several series, an instance without SOPInstanceUID or listed twice,
        more than ``direct_max_bytes`` in all, or a job another handler has claimed."""
        started = self.timer()
        objects = self._objects_of(message)
        if not objects or sum(o.size for o in objects) > self.direct_max_bytes:
            return None
        instances: list[tuple[str, bytes]] = []
        headers: list[InstanceHeader] = []
        # each object is parsed on the thread that read it, while the others still download
        for source, (data, parsed) in zip(
            objects, self.pool.map(self._download_and_parse, objects), strict=True
        ):
            if parsed is None:
                return None  # a zip archive: the general path extracts it
            if isinstance(parsed, PermanentError):
                self._set_aside(source, parsed)
                continue
            instances.append((source.key, data))
            headers.append(parsed)
        series = {series_key_of(header)[0] for header in headers}
        uids = [header.sop_instance_uid for header in headers]
        if len(series) != 1 or not all(uids) or len(set(uids)) != len(uids):
            return None
        job = SeriesJob(
            compute_job_id(series.pop(), uids),
            headers,
            lambda: instances,
            headers_of_fetched=True,
            first_seen_at=str(message.get("created_at") or utc_now_iso()),
            started=started,
        )
        # None when another handler holds the job (maybe a dead one, within its lease): the
        # general path's series check then defers until that claim is finished or abandoned
        return self._run_job(job, message)

    def _check_series(self, message: Message) -> list[Outbound]:
        started = self.timer()
        series_key = message["series_key"]
        entries = read_series_index(self.work, series_key, self.pool)
        if not entries:
            return []
        newest = max(entry.generation for entry in entries)
        if not message.get("force") and message.get("generation", "") < newest:
            log.info("series_check_superseded", stage="ingest", series_key=series_key)
            return []
        job = SeriesJob(
            compute_job_id(series_key, [e.instance_key for e in entries]),
            [e.header for e in entries],
            lambda: self._fetch([e.source for e in entries]),
            headers_of_fetched=False,  # parse the bytes read: the index may be of an older version
            first_seen_at=min(e.indexed_at for e in entries),
            started=started,
        )
        outbound = self._run_job(job, message)
        return outbound if outbound is not None else [self._deferred_check(message)]

    def _run_job(self, job: SeriesJob, message: Message) -> list[Outbound] | None:
        """Assemble ``job`` once: a finished job re-publishes its record (a deferred check
        publishes nothing); None when another handler holds the job's claim."""
        job_id = job.job_id
        done_key = completion_record_key("ingest", "series", job_id)
        previous = read_record(self.work, done_key)
        deferred = int(message.get("attempt", 0)) > 0
        if previous is not None:
            log.info("series_already_done", stage="ingest", job_id=job_id, deferred=deferred)
            return [] if deferred else previous
        claim = claim_job(self.work, job_id, message["message_id"], self.claim_lease)
        if claim is None:
            log.info("series_claimed_elsewhere", stage="ingest", job_id=job_id)
            return None
        try:
            with ClaimHeartbeat(self.work, claim, message["message_id"], self.claim_lease / 4):
                outbound = self._assemble(job, message)
                write_record(self.work, done_key, outbound)
        except Exception:
            release_claim(self.work, claim)  # its retry must not wait for the lease
            raise
        return outbound

    def _deferred_check(self, message: Message) -> Outbound:
        """The same series check again, later: the claim's owner is still assembling."""
        fields = {k: v for k, v in message.items() if k not in ENVELOPE_FIELDS}
        attempt = int(message.get("attempt", 0)) + 1
        return Outbound(
            "ingest.assemble",
            envelope(SERIES_CHECK, attempt=attempt, **fields),
            delay_seconds=max(self.quiet_period, MIN_RECHECK_SECONDS),
        )

    def _download_and_parse(
        self, source: SourceObject
    ) -> tuple[bytes, InstanceHeader | PermanentError | None]:
        """The object's bytes and its header (None for a zip archive; the error of an object
        that is not a usable DICOM instance)."""
        data = self._download(source)
        if is_zip_bytes(data):
            return data, None
        try:
            return data, read_instance_header(data)
        except PermanentError as e:
            return data, e

    def _fetch(self, sources: list[SourceObject]) -> list[tuple[str, bytes]]:
        """(key, bytes) of each object, read on the pool's threads."""
        payloads = self.pool.map(self._download, sources)
        return [(source.key, data) for source, data in zip(sources, payloads, strict=True)]

    def _download(self, source: SourceObject) -> bytes:
        try:
            return self.store_for_bucket(source.bucket).get_bytes(source.key)
        except CovidCtError as e:
            log.warning("instance_unreadable", stage="ingest", key=source.key, error=str(e))
            raise

    def _assemble(self, job: SeriesJob, message: Message) -> list[Outbound]:
        """Convert the series and write its volume."""
        skip = select_series(job.headers, self.config.selection)
        first = job.headers[0]
        job_id = job.job_id
        bound = log.bind(stage="ingest", job_id=job_id, series_uid=first.series_instance_uid)
        if skip is not None:
            record = {"code": skip.code, "reason": skip.reason, "at": utc_now_iso()}
            self.work.put_bytes(f"skipped/{job_id}.json", json.dumps(record).encode())
            bound.info("series_skipped", code=skip.code, reason=skip.reason)
            return []
        result = convert_series(
            job.fetch(),
            self.config,
            headers=job.headers if job.headers_of_fetched else None,
            check_selection=False,
        )
        ready = write_volume(
            self.work,
            result,
            correlation_id=message.get("correlation_id") or new_message_id(),
            first_seen_at=job.first_seen_at,
            seconds=self.timer() - job.started,
        )
        bound.info("series_ready", slices=int(result.volume.array.shape[0]))
        return [Outbound("segment.request", ready)]
