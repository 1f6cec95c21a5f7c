"""Failures a use case reports to its caller; the API maps each kind to a status."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class NotFound(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class Gone(ServiceError):
    """It existed, and is over (an ended game's PIN)."""


class Conflict(ServiceError):
    pass


class Invalid(ServiceError):
    pass


class Unauthorized(ServiceError):
    pass


class UnsupportedMediaType(ServiceError):
    """The content is of a kind the service does not take (a picture that is no PNG, JPEG, GIF or WebP)."""


class TooLarge(ServiceError):
    """It would take more room than the caller has (an account's picture quota)."""


class Unprocessable(ServiceError):
    """Well-formed, but it cannot be done (an increment that would leave the exact range)."""


class Unavailable(ServiceError):
    """Nothing was recorded; the same request may be sent again."""


class OutcomeUnknown(ServiceError):
    """A write may or may not have been recorded; sending the same request again tells which."""


class TooManyRequests(ServiceError):
    """A rate limit refused the request; `retry_after_s` says when to try again."""

    def __init__(self, code: str, message: str, retry_after_s: int, **extra):
        super().__init__(code, message, **extra)
        self.retry_after_s = retry_after_s
