"""A diary is private: who may talk to the server, from where, how much, and what browsers may do with answers.

Plain ASGI middlewares (they see every request before FastAPI parses anything):
- ``Guard``: the Host header on a loopback server (so a web page cannot reach it by DNS rebinding),
  the access token when one is set, and no state-changing request from another origin;
- ``UploadLimit``: a body larger than the limit is refused with 413 while it streams, before any of
  it is written anywhere;
- ``SecurityHeaders``: a Content-Security-Policy without inline scripts, nosniff, no framing, and no
  caching of anything the journal answers (clips included).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "journal_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """Host, token and origin checks; ``token`` None means the server is reachable from this machine only."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    def _token_ok(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        offered = ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        elif "cookie" in headers:
            morsel = SimpleCookie(headers["cookie"]).get(TOKEN_COOKIE)
            offered = morsel.value if morsel else ""
        return secrets.compare_digest(offered.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get("host", "")
        if self.loopback and urlsplit(f"//{host}").hostname not in {h.strip("[]") for h in LOOPBACK_HOSTS}:
            return await send_json(send, 400, {"error": f"unexpected Host header {host!r}: open the journal at "
                                                        "http://127.0.0.1:<port>/"})
        if self.token is not None and not self._token_ok(headers):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            offered = (query.get("token") or [""])[0]
            if scope["method"] == "GET" and scope["path"] == "/" and offered and secrets.compare_digest(
                    offered.encode(), self.token.encode()):
                # The address printed at start carries the token once; from then on a cookie does.
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                                        (b"content-length", b"0")]})
                return await send({"type": "http.response.body", "body": b""})
            return await send_json(send, 401, {"error": "this journal needs its access token: open the address the "
                                                        "server printed at start (…/?token=…), or send "
                                                        "'Authorization: Bearer <token>'"})
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            if (origin is not None and origin not in (f"http://{host}", f"https://{host}")) or site in (
                    "cross-site", "same-site"):
                return await send_json(send, 403, {"error": "refused: a request that changes the journal must "
                                                            "come from the journal's own page"})
        await self.app(scope, receive, send)


class UploadTooLarge(Exception):
    def __init__(self, limit: int, method: str) -> None:
        # Only a POST carries a clip: a huge note (PATCH) was told to "record a shorter clip".
        advice = "record a shorter clip" if method == "POST" else "send a shorter note"
        super().__init__(f"the upload is larger than the server's limit of {limit / 2**20:g} MB "
                         f"(--max-upload-mb); {advice}")
        self.limit = limit


class UploadLimit:
    """Counts body bytes as they arrive. Past the limit the rest is read and dropped (so the client can
    read the 413 instead of a reset connection), and ``UploadTooLarge`` is raised for the app to answer."""

    DRAIN_FACTOR = 4  # a declared body beyond this many limits is refused without reading it

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        declared = _headers(scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= self.DRAIN_FACTOR * self.limit:
                await self._drain(receive)
            return await send_json(send, 413, {"error": str(UploadTooLarge(self.limit, scope["method"]))},
                                   [(b"connection", b"close")])
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if message.get("more_body"):
                        await self._drain(receive)
                    raise UploadTooLarge(self.limit, scope["method"])
            return message

        await self.app(scope, counted, send)

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        while drained <= self.DRAIN_FACTOR * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return


class SecurityHeaders:
    """Headers on every answer; clips and data are never cached."""

    HEADERS = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in self.HEADERS if h[0] not in present]
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
