"""Shared fixtures: sample data, and the real RabbitMQ and SeaweedFS services.

Integration fixtures fail when a service is missing in CI (``CI`` set) and skip only when
the tests are run by hand.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_S3 = {
    "endpoint": "http://127.0.0.1:8333",
    "access_key": "covidct",
    "secret_key": "covidct-secret",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str, hint: str = "start it with `make services-up`") -> None:
    """Fail in CI, skip by hand: a missing service never turns into a pass."""
    message = f"{what} is not reachable; {hint}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def samples_root() -> Path:
    return Path(os.environ.get("COVIDCT_SAMPLES", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    root = samples_root()
    if not root.is_dir():
        service_missing(f"the sample data folder {root}", "set COVIDCT_SAMPLES")
    return root


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import pika
    import pika.exceptions

    url = os.environ.get("COVIDCT_AMQP_URL", DEFAULT_AMQP_URL)
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        service_missing(f"RabbitMQ at {url}")
    return url


@pytest.fixture
def exchange(amqp_url: str) -> Iterator[str]:
    """A fresh exchange name (and so a fresh set of queues); deleted afterwards."""
    import pika

    from covidct_core.topology import delete_topology
    from tests.helpers import WORKER_RETRY_DELAYS

    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for delays in ((0.2, 0.4), (10.0, 60.0, 300.0), (0.5,), WORKER_RETRY_DELAYS):
        delete_topology(channel, name, delays)
    connection.close()


@pytest.fixture(scope="session")
def s3_settings() -> dict[str, str]:
    settings = {
        "endpoint": os.environ.get("COVIDCT_S3_ENDPOINT", DEFAULT_S3["endpoint"]),
        "access_key": os.environ.get("COVIDCT_S3_ACCESS_KEY", DEFAULT_S3["access_key"]),
        "secret_key": os.environ.get("COVIDCT_S3_SECRET_KEY", DEFAULT_S3["secret_key"]),
        "region": "us-east-1",
    }
    from botocore.exceptions import BotoCoreError, ClientError

    from covidct_core.s3 import make_s3_client

    client = make_s3_client(
        settings["endpoint"], settings["access_key"], settings["secret_key"], "us-east-1"
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        service_missing(f"the S3 server at {settings['endpoint']}")
    return settings


@pytest.fixture(scope="session")
def s3_client(s3_settings: dict[str, str]) -> Any:
    from covidct_core.s3 import make_s3_client

    return make_s3_client(
        s3_settings["endpoint"],
        s3_settings["access_key"],
        s3_settings["secret_key"],
        s3_settings["region"],
    )


def _empty_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh bucket on the real S3 server, emptied and removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    _empty_bucket(s3_client, name)


@pytest.fixture
def s3_store(s3_client: Any, s3_bucket: str) -> Any:
    from covidct_core.s3 import S3Store

    return S3Store(s3_client, s3_bucket)


@pytest.fixture
def input_store(s3_client: Any) -> Iterator[Any]:
    """A second fresh bucket: the input bucket users drop DICOM files into."""
    from covidct_core.s3 import S3Store

    name = f"in-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    yield S3Store(s3_client, name)
    _empty_bucket(s3_client, name)
