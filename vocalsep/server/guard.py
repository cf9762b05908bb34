"""Refusing requests that do not come from the server's own page or from a script: an ASGI
middleware in front of the whole app.

- **Host** (DNS rebinding): a web page on ``evil.example`` whose name is made to resolve to
  127.0.0.1 talks to the server as if it were its own origin, but its requests carry
  ``Host: evil.example``. Every request must name the server by one of :func:`allowed_hosts`
  (the address it is bound to, ``localhost``, ``127.0.0.1``, ``[::1]``, and the names given
  with ``--allow-host``); anything else gets 400.
- **Origin** (cross-site requests): a multipart form posted by any page the user visits needs
  no CORS preflight, so it could create jobs. A request other than GET/HEAD/OPTIONS whose
  ``Origin`` is present and is not the server itself (scheme aside, host and port as in its
  ``Host`` header), or whose ``Sec-Fetch-Site`` is ``cross-site``, gets 403. Scripts (curl,
  httpx) send neither header and are served as before.

Errors are JSON ``{"detail": "<one line>"}`` like every other error of the app (Starlette's
``TrustedHostMiddleware`` answers in plain text).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: names of this machine's loopback, always allowed in ``Host``
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
#: addresses meaning "every interface": not a name a client can use
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")
#: methods that change nothing, never refused for their origin
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` (what a ``Host`` header may hold)
_HOST_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\s\[\]:/@]+))(?::(?P<port>\d{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_host(name: str) -> str:
    """A host name as compared here: lower case, no brackets around IPv6, no trailing dot."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".") if name not in ("", ".") else name


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The names a request's ``Host`` may give for a server bound to ``bound``: that address
    (unless it means every interface), the loopback names and ``extra``; None (any host) if
    ``extra`` holds ``*``."""
    extra = [normalize_host(h) for h in extra]
    if "*" in extra:
        return None
    names = {*LOCAL_HOSTS, *extra}
    if bound.strip() not in _ANY_ADDRESS:
        names.add(normalize_host(bound))
    return frozenset(names)


def split_host(value: str) -> tuple[str, str | None] | None:
    """``(name, port or None)`` of a ``Host`` header value, the name normalised; None if it is
    not one."""
    match = _HOST_RE.fullmatch(value.strip())
    if not match:
        return None
    return normalize_host(match["v6"] or match["name"]), match["port"]


def cross_site(method: str, headers: Headers) -> str | None:
    """Why a request must be refused as coming from another site, or None."""
    if method in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site)"
    origin = headers.get("origin")
    if origin is None:  # not a browser (curl, httpx, scripts): nothing to compare
        return None
    refused = f"cross-origin request refused: Origin {origin[:100]!r} is not this server"
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return refused
    host = split_host(headers.get("host", ""))
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or host is None:
        return refused  # "null" (a sandboxed frame, a file: page), another scheme
    default = _DEFAULT_PORTS[parts.scheme]
    same = (normalize_host(parts.hostname) == host[0]
            and str(origin_port or default) == (host[1] or default))
    return None if same else refused


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers={"X-Content-Type-Options": "nosniff"})


class RequestGuard:
    """ASGI middleware: 400 for a ``Host`` not in ``hosts`` (None: any), 403 for a
    state-changing request from another origin (see the module's doc)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.hosts is not None:
            host = split_host(headers.get("host", ""))
            if host is None or host[0] not in self.hosts:
                shown = headers.get("host", "")[:100]
                names = ", ".join(sorted(f"[{h}]" if ":" in h else h for h in self.hosts))
                await _refuse(400, f"invalid Host header {shown!r}: this server answers to "
                                   f"{names} (more with --allow-host)")(scope, receive, send)
                return
        problem = cross_site(scope["method"], headers)
        if problem:
            await _refuse(403, problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
