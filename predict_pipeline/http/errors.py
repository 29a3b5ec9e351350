"""The errors a fetch raises, each naming the URL it failed on with its secrets masked.

`FetchError` and its subclasses are what `HttpClient.send` raises; the caller maps each to a
feed-run status. URLs in them pass through `redact_url`, so no credential reaches a log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from predict_pipeline.secrets import MASK, is_secret_name


class FetchError(Exception):
    """A fetch that failed; carries the redacted url, attempts, last status and a short reason."""

    def __init__(self, url: str, reason: str, *, attempts: int = 0, status_code: int | None = None):
        self.url = redact_url(url)
        self.reason = reason
        self.attempts = attempts
        self.status_code = status_code
        status = "" if status_code is None else f", last status {status_code}"
        super().__init__(f"{reason} [{self.url}; {attempts} attempt(s){status}]")


class RateLimitedError(FetchError):
    """The source kept answering 429 until the retries were spent."""


class FetchTimeoutError(FetchError):
    """Connecting or reading timed out on the last attempt."""


class DeadlineExceededError(FetchTimeoutError):
    """The send's total deadline passed (a slow or dripping server); never retried."""


class ResponseTooLargeError(FetchError):
    """The body passed the source's maximum size after decoding; refused as soon as it did."""


class AuthFailedError(FetchError):
    """401/403: the credentials were refused (never retried). `expired`: the source said they
    expired (RFC 6750's WWW-Authenticate error_description, e.g. "The access token expired")."""

    def __init__(self, url: str, reason: str, *, expired: bool = False, **kwargs: Any):
        super().__init__(url, reason, **kwargs)
        self.expired = expired


class HttpStatusError(FetchError):
    """Any other non-success status (or too many redirects); `status_code` says which."""


class TransportFailure(FetchError):
    """The connection failed (refused, reset, DNS) on the last attempt."""


class UnsafeUrlError(FetchError):
    """The SSRF guard refused the URL before any request was made."""


class ReplayMissError(FetchError):
    """Replay mode has no recorded response for the request."""


class InvalidJsonError(ValueError):
    """A response body that is not JSON; names the url."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"response from {url} is not valid JSON: {reason}")


class ReplayManifestError(ValueError):
    """The replay manifest is missing or malformed; names the file and the entry."""


def redact_url(url: str) -> str:
    """The url without user:password@, with secret-named query values masked, without fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            masked = [(name, MASK if is_secret_name(name) else value) for name, value in pairs]
            query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
