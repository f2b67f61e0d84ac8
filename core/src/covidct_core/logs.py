"""structlog JSON logging. Only entrypoints call :func:`configure_logging`."""

from __future__ import annotations

import logging
import sys

import structlog

# Header fields that identify a patient. They must never be logged.
PATIENT_IDENTIFIER_FIELDS = frozenset(
    {
        "patient_name",
        "patient_id",
        "patient_birth_date",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "PatientAddress",
    }
)


def drop_patient_identifiers(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Remove any field named like a patient identifier, whoever bound it."""
    for name in PATIENT_IDENTIFIER_FIELDS.intersection(event_dict):
        event_dict[name] = "[removed]"
    return event_dict


def configure_logging(level: str = "INFO", json_output: bool = True) -> None:
    """Configure structlog (and stdlib logging) for one process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(level=numeric, stream=sys.stdout, format="%(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_patient_identifiers,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
