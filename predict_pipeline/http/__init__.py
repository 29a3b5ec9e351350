"""The one HTTP client every feed uses: retries, rate limits, stats, SSRF guard and replay.

The names other modules import; where each lives is this package's own business.
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
