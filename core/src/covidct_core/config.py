"""Typed settings read once from environment variables.

:func:`read_settings` reads every field of a settings dataclass from the environment and
raises one :class:`ConfigError` that names every missing or invalid variable.
Field metadata ``env`` names the variable; a field without a default is required.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from covidct_core.errors import ConfigError

T = TypeVar("T")


def env_field(name: str, default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """Declare a settings field read from environment variable ``name``."""
    metadata = {"env": name, "help": help}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def _parse_floats(raw: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in raw.split(",") if part.strip())
    if not values:
        raise ValueError("expected a comma-separated list of numbers")
    return values


PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _parse_bool,
    tuple[float, ...]: _parse_floats,
}


def read_settings(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build ``cls`` from ``environ``; raise ConfigError listing every problem at once."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in dataclasses.fields(cls):
        env_name = item.metadata.get("env")
        if env_name is None:
            continue
        raw = environ.get(env_name)
        if raw is None or raw == "":
            if item.default is dataclasses.MISSING:
                problems.append(f"{env_name} is required but not set")
            continue
        parser = PARSERS.get(hints[item.name])
        if parser is None:
            raise TypeError(f"no parser for {hints[item.name]!r}")
        try:
            values[item.name] = parser(raw)
        except ValueError as e:
            problems.append(f"{env_name} is invalid: {e}")
    if problems:
        raise ConfigError(problems)
    return cls(**values)


@dataclass(frozen=True)
class BrokerSettings:
    amqp_url: str = env_field("COVIDCT_AMQP_URL", help="AMQP URL of RabbitMQ")
    exchange: str = env_field("COVIDCT_EXCHANGE", "covidct", help="topic exchange")
    prefetch: int = env_field("COVIDCT_PREFETCH", 1, help="unacked messages per worker")
    retry_delays: tuple[float, ...] = env_field(
        "COVIDCT_RETRY_DELAYS", (10.0, 60.0, 300.0), help="retry queue TTLs in seconds"
    )


@dataclass(frozen=True)
class StorageSettings:
    endpoint: str = env_field("COVIDCT_S3_ENDPOINT", help="S3 endpoint URL")
    access_key: str = env_field("COVIDCT_S3_ACCESS_KEY")
    secret_key: str = env_field("COVIDCT_S3_SECRET_KEY")
    region: str = env_field("COVIDCT_S3_REGION", "us-east-1")
    work_bucket: str = env_field("COVIDCT_WORK_BUCKET", "covidct-work")
    input_bucket: str = env_field("COVIDCT_INPUT_BUCKET", "covidct-input")


@dataclass(frozen=True)
class ProcessSettings:
    metrics_port: int = env_field("COVIDCT_METRICS_PORT", 9100)
    log_level: str = env_field("COVIDCT_LOG_LEVEL", "INFO")


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a stage worker needs, read in one go."""

    broker: BrokerSettings
    storage: StorageSettings
    process: ProcessSettings


def read_worker_settings(environ: Mapping[str, str]) -> WorkerSettings:
    """Read the three groups together so that one error lists every problem."""
    problems: list[str] = []
    parts: dict[str, Any] = {}
    for name, cls in (
        ("broker", BrokerSettings),
        ("storage", StorageSettings),
        ("process", ProcessSettings),
    ):
        try:
            parts[name] = read_settings(cls, environ)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return WorkerSettings(**parts)


@dataclass(frozen=True)
class ModelSettings:
    """Where a model stage finds its bundle and which device it prefers."""

    model_uri: str = env_field(
        "COVIDCT_MODEL_URI", "", help="bundle folder or s3://bucket/models/<name>/<version>/"
    )
    device: str = env_field("COVIDCT_DEVICE", "auto", help="auto | cpu | cuda")
    cache_dir: str = env_field("COVIDCT_MODEL_CACHE", "/tmp/covidct-models")


def read_model_settings(environ: Mapping[str, str]) -> ModelSettings:
    settings = read_settings(ModelSettings, environ)
    if settings.device not in ("auto", "cpu", "cuda"):
        raise ConfigError([f"COVIDCT_DEVICE must be auto, cpu or cuda, not {settings.device!r}"])
    return settings
