"""The one HTTP client every feed uses: retries, rate limits, stats, SSRF guard and replay.

`HttpClient.send(PageRequest)` returns a `FetchResponse` or raises a typed `FetchError` that the
caller maps to a feed-run status. Nothing here knows about Dagster or Postgres.

Every send is bounded (`ResponseLimits`, per source in the registry): the body is streamed and
refused as soon as it passes `max_bytes` after decoding (a gzip bomb never inflates whole), and
the whole send (attempts, retry waits, redirects) ends at `deadline_s`: every socket wait of a
live request is cut at the deadline, so a server dripping a byte every few seconds fails on
time instead of holding the fetch and every feed queued behind it.

One module per concern: client (HttpClient, FetchResponse, build_http_client), errors (the
FetchError family, redact_url), guard (the SSRF guard), ratelimit (TokenBucket), stats
(FetchStats), retry (backoff and Retry-After), limits (ResponseLimits, the deadline, bounded
body reading), transport (the deadline-keeping live transport) and replay (ReplayTransport).
This module re-exports the names the rest of the project imports from predict_pipeline.http.
"""

from predict_pipeline.http.client import (
    CONNECT_TIMEOUT_S,
    FetchResponse,
    HttpClient,
    build_http_client,
)
from predict_pipeline.http.errors import (
    AuthFailedError,
    DeadlineExceededError,
    FetchError,
    FetchTimeoutError,
    HttpStatusError,
    InvalidJsonError,
    RateLimitedError,
    ReplayManifestError,
    ReplayMissError,
    ResponseTooLargeError,
    TransportFailure,
    UnsafeUrlError,
    redact_url,
)
from predict_pipeline.http.guard import (
    Resolver,
    check_url_allowed,
    resolve_host,
)
from predict_pipeline.http.limits import (
    ResponseLimits,
)
from predict_pipeline.http.ratelimit import (
    TokenBucket,
)
from predict_pipeline.http.replay import (
    ReplayTransport,
)
from predict_pipeline.http.retry import (
    backoff_delay,
    parse_retry_after,
)
from predict_pipeline.http.stats import (
    FetchStats,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "AuthFailedError",
    "DeadlineExceededError",
    "FetchError",
    "FetchResponse",
    "FetchStats",
    "FetchTimeoutError",
    "HttpClient",
    "HttpStatusError",
    "InvalidJsonError",
    "RateLimitedError",
    "ReplayManifestError",
    "ReplayMissError",
    "ReplayTransport",
    "Resolver",
    "ResponseLimits",
    "ResponseTooLargeError",
    "TokenBucket",
    "TransportFailure",
    "UnsafeUrlError",
    "backoff_delay",
    "build_http_client",
    "check_url_allowed",
    "parse_retry_after",
    "redact_url",
    "resolve_host",
]
