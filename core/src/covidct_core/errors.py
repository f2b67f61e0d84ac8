"""Typed errors shared by every stage.

A handler raises :class:`PermanentError` for input that will never succeed (the message is
parked and an error object is written) and :class:`RetryableError` for transient trouble
(the message goes through the retry queues).
"""

from __future__ import annotations

from collections.abc import Sequence


class CovidCtError(Exception):
    """Base class of every error raised by covidct libraries."""


class ConfigError(CovidCtError):
    """One or more environment variables are missing or invalid."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class PermanentError(CovidCtError):
    """The input can never be processed. ``code`` is a stable UPPER_SNAKE identifier."""

    def __init__(self, code: str, reason: str, inputs: Sequence[str] = ()) -> None:
        self.code = code
        self.reason = reason
        self.inputs = list(inputs)
        super().__init__(f"{code}: {reason}")


class RetryableError(CovidCtError):
    """A transient failure; the same message may succeed later."""


class StorageError(CovidCtError):
    """An object-storage operation failed."""


class ObjectNotFoundError(StorageError):
    """The requested object does not exist."""


class InvalidKeyError(StorageError):
    """A key is empty, absolute or escapes the store root."""


class BrokerError(CovidCtError):
    """A broker operation failed."""


class UnroutableMessageError(BrokerError):
    """A published message matched no queue."""


class PublishNotConfirmedError(BrokerError):
    """The broker did not confirm a published message."""


class MessageValidationError(CovidCtError):
    """A message body is not valid JSON or does not match its schema."""


class ModelLoadError(CovidCtError):
    """A model bundle cannot be found, verified or loaded."""
