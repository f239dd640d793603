"""Just enough HTTP/1.1 for WinRM: keep-alive, Content-Length bodies read in full, one write per reply."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 32 * 1024
# Bodies above this are not even read: 413 and the connection is closed.
MAX_BODY_BYTES = 8 * 1024 * 1024


class HttpError(Exception):
    """A request that cannot be answered normally; the connection is closed after the reply."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    def serialize(self) -> bytes:
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {self.status} {reason}", "Server: Microsoft-HTTPAPI/2.0"]
        lines.extend(f"{k}: {v}" for k, v in self.headers)
        lines.append(f"Content-Length: {len(self.body)}")
        if self.close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """The next request on a connection, or None when the client closed it cleanly."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400) from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431) from exc
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text[:-4].split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError as exc:
        raise HttpError(400) from exc
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400)
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(501)  # WinRM clients always send Content-Length
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise HttpError(400) from exc
    if length < 0:
        raise HttpError(400)
    if length > MAX_BODY_BYTES:
        raise HttpError(413)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(400) from exc
    return HttpRequest(method, target, version, headers, body)
