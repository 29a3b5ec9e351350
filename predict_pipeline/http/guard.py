"""The SSRF guard: a URL is fetched only when it is http(s) and every address it reaches is
public, unless the host name or a CIDR holding the address is in `allow_private_hosts`."""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from predict_pipeline.http.errors import TransportFailure, UnsafeUrlError

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Sequence[str]]


def resolve_host(host: str) -> list[str]:
    """Every A/AAAA address of `host`, as text."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class _AllowList:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def admits(self, address: IPAddress) -> bool:
        candidates = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(ip in net for ip in candidates for net in self.networks)


@functools.lru_cache(maxsize=64)
def _parse_allow_list(entries: tuple[str, ...]) -> _AllowList:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower().strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        if not text or "/" in text or ":" in text or " " in text:
            raise ValueError(f"allow_private_hosts entry {entry!r} is not a host name, IP or CIDR")
        names.add(text.rstrip("."))
    return _AllowList(frozenset(names), tuple(networks))


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address tunnels to (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forbidden_kind(address: IPAddress) -> str | None:
    """Why an address must not be fetched from (None when it is a public unicast address)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _forbidden_kind(embedded)
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _CGNAT, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-global"),
    )
    return next((kind for hit, kind in checks if hit), None)


def check_url_allowed(
    url: str,
    allow_private_hosts: Iterable[str] = (),
    *,
    resolver: Resolver | None = resolve_host,
) -> None:
    """Refuse URLs that are not http(s) or that reach a non-public address (SSRF guard).

    Every address the host resolves to must be public unless the host name, or a CIDR holding
    the address, is in `allow_private_hosts`. With `resolver=None` (replay mode, where nothing
    connects) only literal IPs are checked. Raises UnsafeUrlError, or TransportFailure when the
    host name does not resolve.
    """
    # Residual risk: the address is not pinned, so httpx resolves the name again when it
    # connects and a hostile DNS server could answer differently (rebinding); egress firewall
    # rules are the backstop for that window.
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise UnsafeUrlError(url, f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrlError(url, f"scheme {scheme or '(none)'!r} refused; only http and https")
    if not host:
        raise UnsafeUrlError(url, "URL has no host")
    host = host.rstrip(".")
    allow = _parse_allow_list(tuple(allow_private_hosts))
    if host in allow.names:
        return
    literal = _ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
        resolved_from = ""
    elif resolver is None:
        return
    else:
        try:
            addresses = [ipaddress.ip_address(text) for text in resolver(host)]
        except UnicodeError:
            raise UnsafeUrlError(url, f"host {host!r} is not a valid IDNA host name") from None
        except OSError as exc:
            raise TransportFailure(url, f"cannot resolve host {host!r}: {exc}") from None
        if not addresses:
            raise TransportFailure(url, f"host {host!r} resolved to no addresses")
        resolved_from = f"host {host!r} resolves to "
    for address in addresses:
        if allow.admits(address):
            continue
        kind = _forbidden_kind(address)
        if kind is not None:
            raise UnsafeUrlError(
                url, f"{resolved_from}{address}, a {kind} address; not in allow_private_hosts"
            )
