"""A lean HTTP/1.1 transport for plain-HTTP origins, under an ``httpx.AsyncClient``.

The work backend's requests (the exact token count behind a quote, then the answer) go to a
model server beside the agent, over plain HTTP, three to a job. httpx's default transport spends
most of a request's client CPU in its machinery (a pool that checks every pooled connection on
every request, anyio cancel scopes, h11's state machine): about ten times what the exchange
itself needs. This transport keeps httpx's API (the backend takes an injected
``httpx.AsyncClient``; requests, responses, timeouts and exceptions are httpx's) and does the
exchange itself, on an asyncio protocol whose bytes wait in one bounded buffer: a read takes
what is buffered at once, and only a read that must wait arms a timer:

- one request at a time per connection; ``max_connections`` bounds the requests in flight
  (each on its own connection; a request waits for a slot at most ``pool`` seconds) and, apart,
  the idle connections kept for reuse (across origins; the oldest closed first). Idle ones are
  reused last used first; not reused: one the server has closed (its EOF seen by the event
  loop, or found in the kernel by one ``MSG_PEEK``), one idle longer than ``idle_expiry_s``
  (below common servers' keep-alive: llama.cpp's is 5 s; such ones are closed at the next
  request), one that received bytes while idle, one whose response said ``Connection: close``,
  came as HTTP/1.0 without ``keep-alive``, ended without a length, switched protocols (101),
  carried both ``Transfer-Encoding`` and ``Content-Length``, or was not read to its end;
- bodies by ``Content-Length``, ``Transfer-Encoding: chunked`` (what is buffered given at once,
  a partial chunk included), or until the server closes (a reset is a ``ReadError``, not an
  end); request bodies likewise (chunked when httpx says so), waiting while the event loop's
  write buffer is above its high-water mark; reading pauses while 256 KiB wait unread;
- an answer the server sends before the request body is all sent (413, 401, 503…) is read
  and returned like httpx does, and its connection closed;
- httpx's timeouts (``connect``, ``read``, ``write``, ``pool``) are honoured and raise httpx's
  exceptions, as do refused connections, unresolvable hosts, lost connections and malformed
  responses (lines may end in a bare LF, as h11 accepts; heads, chunk lines and trailers are
  bounded, and so is the number of interim 1xx answers).

Not handled (use httpx's default transport, e.g. through ``mounts``): TLS, proxies, HTTP/2,
``Upgrade``. A request is never sent twice: nothing is retried here. A request cancelled or
failed midway closes its connection: it is never reused.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line + headers (or trailers) accepted from a server."""
MAX_LINE_BYTES = 4096
"""The longest chunk-size line."""
MAX_CHUNK_SIZE_DIGITS = 15
MAX_INTERIM_RESPONSES = 16
MAX_BUFFER_BYTES = 256 * 1024
"""Unread bytes past which the connection stops reading until they are taken."""
MAX_PIECE_BYTES = 64 * 1024
"""The most body bytes handed up in one piece."""
DEFAULT_IDLE_EXPIRY_S = 4.0
NO_BODY_STATUS = frozenset({204, 304})
HEX_DIGITS = b"0123456789abcdefABCDEF"
METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

_Origin = tuple[str, int]


class _Timeouts:
    """The request's httpx timeouts (``None``: no limit)."""

    __slots__ = ("connect", "pool", "read", "write")

    def __init__(self, extensions: dict[str, Any]) -> None:
        given = extensions.get("timeout", {})
        self.connect: float | None = given.get("connect")
        self.read: float | None = given.get("read")
        self.write: float | None = given.get("write")
        self.pool: float | None = given.get("pool")


class _Connection(asyncio.Protocol):
    """One connection: what arrives waits in ``buffer``; a reader waits (with a timer) only
    when the buffer does not hold what it needs yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.idle = False
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses); idempotent: called
        # by the loop and after the connect
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.idle:  # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        self.buffer += data
        if len(self.buffer) > MAX_BUFFER_BYTES and not self._reading_paused \
                and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc  # a reset, not the server's orderly end
        self._wake()
        self.resume_writing()  # a writer waiting finds the transport closing at its next write

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- used by the transport ---------------------------------------------------------------

    def check_open(self, request: httpx.Request) -> None:
        """Raise what an end of the connection means when more bytes are needed."""
        if self.error is not None:
            raise httpx.ReadError(f"the connection was lost: {self.error}", request=request)
        if self.eof:
            raise httpx.RemoteProtocolError("the server closed the connection early",
                                            request=request)

    async def fill(self, read_s: float | None, request: httpx.Request) -> None:
        """Wait until more bytes (or the end) arrive; ``ReadTimeout`` after ``read_s``."""
        self.check_open(request)
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = None if read_s is None else loop.call_later(read_s, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx.ReadTimeout("reading the response timed out", request=request) from None
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self, size: int) -> bytes:
        """Up to ``size`` buffered bytes (reading resumes once the buffer is low again)."""
        piece = bytes(self.buffer[:size])
        del self.buffer[:size]
        if self._reading_paused and len(self.buffer) < MAX_BUFFER_BYTES // 2 \
                and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return piece

    async def write(self, data: bytes, write_s: float | None, request: httpx.Request) -> None:
        assert self._transport is not None
        if self._transport.is_closing():
            raise httpx.WriteError("the connection was lost before sending", request=request)
        self._transport.write(data)
        writable = self._writable
        if writable is None:
            return
        try:
            async with asyncio.timeout(write_s):
                await asyncio.shield(writable)
        except TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        if self._transport.is_closing():
            raise httpx.WriteError("the connection was lost while sending", request=request)

    def usable(self) -> bool:
        """Not closed by the server — its FIN may be in the kernel before the event loop has
        seen it: one peek, which never takes a byte."""
        if self.eof or self.buffer or self._transport is None or self._transport.is_closing():
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return False  # the server's EOF, or bytes nobody asked for
        except BlockingIOError:
            return True  # nothing to read: still open
        except OSError:
            return False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive, for ``http://`` URLs only."""

    def __init__(self, *, max_connections: int = 16,
                 idle_expiry_s: float = DEFAULT_IDLE_EXPIRY_S) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._idle: list[tuple[_Origin, _Connection]] = []  # the longest idle first
        self._max_idle = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle_expiry_s = idle_expiry_s
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"this transport speaks plain HTTP only, not {request.url.scheme!r}",
                request=request)
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = _Timeouts(request.extensions)
        chunked = ("content-length" not in request.headers
                   and "transfer-encoding" in request.headers)
        head = _request_head(request, chunked)  # refused before any connection is taken
        body = b"" if chunked else await _whole_body(request)
        await self._take_slot(request, timeouts.pool)
        connection: _Connection | None = None
        try:
            origin = (request.url.host, request.url.port or 80)
            connection = await self._connection(origin, request, timeouts.connect)
            try:
                await _send(connection, request, head, body, chunked, timeouts.write)
            except httpx.WriteError as unsent:
                status, reason, headers = await _early_answer(connection, request, timeouts.read,
                                                              unsent)
                keep = False
            else:
                status, reason, headers, keep = await _read_head(connection, request,
                                                                 timeouts.read)
            framing = _framing(request, status, headers, keep)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        stream = _ResponseBody(self, origin, connection, request, timeouts.read, framing)
        return httpx.Response(status, headers=headers, stream=stream, request=request,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    async def aclose(self) -> None:
        self._closed = True
        for _, connection in self._idle:
            connection.close()
        self._idle.clear()

    # -- connections ---------------------------------------------------------------------

    async def _take_slot(self, request: httpx.Request, pool_s: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # at once: a free slot never waits
            return
        try:
            async with asyncio.timeout(pool_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in time", request=request) from None

    async def _connection(self, origin: _Origin, request: httpx.Request,
                          connect_s: float | None) -> _Connection:
        self._close_expired(time.monotonic())
        for i in range(len(self._idle) - 1, -1, -1):  # the last used first
            if self._idle[i][0] == origin:
                connection = self._idle.pop(i)[1]
                connection.idle = False
                if connection.usable():
                    return connection
                connection.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                sock = await _connect(origin)
                transport, connection = await loop.create_connection(
                    lambda: _Connection(sock), sock=sock)
                connection.connection_made(transport)  # some loops call it only later
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting timed out", request=request) from None
        except (OSError, UnicodeError) as exc:  # refused, unreachable, a name IDNA refuses
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise httpx.ConnectError(f"cannot connect: {reason}", request=request) from None
        return connection

    def _close_expired(self, now: float) -> None:
        while self._idle and now - self._idle[0][1].idle_since >= self._idle_expiry_s:
            self._idle.pop(0)[1].close()

    def _release(self, origin: _Origin, connection: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            if len(self._idle) >= self._max_idle:
                self._idle.pop(0)[1].close()  # the longest idle, whatever its origin
            connection.idle = True
            connection.idle_since = time.monotonic()
            self._idle.append((origin, connection))
        else:
            connection.close()
        self._slots.release()


async def _connect(origin: _Origin) -> socket.socket:
    """A connected non-blocking TCP socket to the first address of ``origin`` that answers."""
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(origin[0], origin[1], type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"no address for {origin[0]}")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            failure = exc
            continue
        return sock
    raise failure


# -- the request ---------------------------------------------------------------------------


def _request_head(request: httpx.Request, chunked_body: bool) -> bytes:
    if not METHOD.fullmatch(request.method):
        raise httpx.LocalProtocolError("the request method is not a token", request=request)
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    lines += [name + b": " + value for name, value in request.headers.raw]
    lines += [b"", b""]
    head = b"\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
        raise httpx.LocalProtocolError("a request line or header holds a line break",
                                       request=request)
    return head


async def _whole_body(request: httpx.Request) -> bytes:
    """The body of a request that states its length (none without a length)."""
    body = await request.aread()
    if "content-length" not in request.headers and body:
        raise httpx.LocalProtocolError("a request body needs a length or chunked encoding",
                                       request=request)
    return body


async def _send(connection: _Connection, request: httpx.Request, head: bytes, body: bytes,
                chunked: bool, write_s: float | None) -> None:
    if not chunked:
        await connection.write(head + body if len(body) < MAX_PIECE_BYTES else head,
                               write_s, request)
        if len(body) >= MAX_PIECE_BYTES:
            await connection.write(body, write_s, request)
        return
    await connection.write(head, write_s, request)
    assert isinstance(request.stream, httpx.AsyncByteStream)
    async for part in request.stream:
        if part:
            await connection.write(b"%x\r\n%s\r\n" % (len(part), part), write_s, request)
    await connection.write(b"0\r\n\r\n", write_s, request)


# -- the response --------------------------------------------------------------------------


async def _read_head(connection: _Connection, request: httpx.Request, read_s: float | None
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """The final response's status, reason, headers, and whether its version keeps the
    connection alive by default (interim 1xx responses skipped, a bounded number of them)."""
    for _ in range(MAX_INTERIM_RESPONSES):
        head = await _take_head(connection, MAX_HEAD_BYTES, read_s, request)
        status, reason, headers, keep = _parse_head(head, request)
        if not 100 <= status < 200 or status == 101:
            return status, reason, headers, keep
    raise httpx.RemoteProtocolError("too many interim responses", request=request)


async def _early_answer(connection: _Connection, request: httpx.Request, read_s: float | None,
                        unsent: httpx.WriteError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """After sending failed (``unsent``): the answer the server sent before it stopped reading
    (413, 401, 503…), which is the outcome, as with httpx; else ``unsent``."""
    if connection.buffer or not connection.eof:
        try:
            return (await _read_head(connection, request, read_s))[:3]
        except httpx.HTTPError:
            pass
    raise unsent


async def _take_head(connection: _Connection, limit: int, read_s: float | None,
                     request: httpx.Request) -> bytes:
    """The buffered bytes through the first empty line (CRLF or a bare LF), at most
    ``limit``, waiting for them."""
    buffer = connection.buffer
    searched = 0
    while True:
        end = _blank_line_end(buffer, searched, limit)
        if end is not None:
            return connection.take(end)
        if len(buffer) > limit:
            raise httpx.RemoteProtocolError("the response head is too long", request=request)
        searched = max(0, len(buffer) - 3)
        await connection.fill(read_s, request)


def _blank_line_end(buffer: bytearray, start: int, limit: int) -> int | None:
    """Where the first empty line ends (just past it), or None."""
    at = buffer.find(b"\n", start, limit)
    while at >= 0:
        following = at + 1
        if buffer[following:following + 1] == b"\n":
            return following + 1
        if buffer[following:following + 2] == b"\r\n":
            return following + 2
        at = buffer.find(b"\n", following, limit)
    return None


async def _take_line(connection: _Connection, limit: int, read_s: float | None,
                     request: httpx.Request) -> bytes:
    """One line (its CRLF or bare LF taken, not returned), at most ``limit`` long."""
    buffer = connection.buffer
    while True:
        at = buffer.find(b"\n", 0, limit)
        if at >= 0:
            return connection.take(at + 1).rstrip(b"\r\n")
        if len(buffer) >= limit:
            raise httpx.RemoteProtocolError("a response line is too long", request=request)
        await connection.fill(read_s, request)


def _parse_head(head: bytes, request: httpx.Request
                ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    lines = [line.rstrip(b"\r") for line in head.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    parts = lines[0].split(b" ", 2) if lines else []
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit() \
            or len(parts[1]) != 3:
        raise httpx.RemoteProtocolError("malformed status line", request=request)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise httpx.RemoteProtocolError("malformed response header", request=request)
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) == 3 else b"", headers, parts[0] == b"HTTP/1.1"


class _Framing:
    """How the response body ends: ``length`` bytes, chunked, or at the server's close."""

    __slots__ = ("chunked", "keep_alive", "length")

    def __init__(self, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


def _framing(request: httpx.Request, status: int, headers: list[tuple[bytes, bytes]],
             keep: bool) -> _Framing:
    """``keep``: the version keeps the connection alive unless told (HTTP/1.1)."""
    length: int | None = None
    codings: bytes | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise httpx.RemoteProtocolError("malformed Content-Length", request=request)
            length = int(value)
        elif lowered == b"transfer-encoding":
            codings = value.lower() if codings is None else codings + b"," + value.lower()
        elif lowered == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            keep = (keep or b"keep-alive" in tokens) and b"close" not in tokens
    if status == 101:  # the connection now speaks another protocol: never reused
        return _Framing(0, False, False)
    if request.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
        return _Framing(0, False, keep)
    if codings is not None:
        chunked = codings.rsplit(b",", 1)[-1].strip() == b"chunked"
        # with a length too, or a coding it cannot follow: never reused
        return _Framing(None, chunked, keep and chunked and length is None)
    if length is not None:
        return _Framing(length, False, keep)
    return _Framing(None, False, False)  # delimited by the server's close


class _ResponseBody(httpx.AsyncByteStream):
    """The response body as it arrives (whatever is buffered, at once); the connection goes
    back to the pool only when the body was read to its end and the server keeps it alive."""

    def __init__(self, transport: Http1Transport, origin: _Origin, connection: _Connection,
                 request: httpx.Request, read_s: float | None, framing: _Framing) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._request = request
        self._read_s = read_s
        self._framing = framing
        self._complete = framing.length == 0 and not framing.chunked

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        framing = self._framing
        if framing.chunked:
            async for part in self._chunks(connection):
                yield part
        elif framing.length is not None:
            left = framing.length
            while left:
                if not connection.buffer:
                    await connection.fill(self._read_s, self._request)
                    continue
                part = connection.take(min(left, MAX_PIECE_BYTES))
                left -= len(part)
                yield part
        else:
            while True:
                if connection.buffer:
                    yield connection.take(MAX_PIECE_BYTES)
                elif connection.error is not None:
                    connection.check_open(self._request)  # a reset is not the body's end
                elif connection.eof:
                    break
                else:
                    await connection.fill(self._read_s, self._request)
        self._complete = True

    async def _chunks(self, connection: _Connection) -> AsyncIterator[bytes]:
        """The chunked body: everything buffered (whole chunks joined, a partial one too) in
        one piece; waits only when nothing of the body is buffered."""
        buffer = connection.buffer
        read_s, request = self._read_s, self._request
        parts: list[bytes] = []
        held = 0  # bytes in parts
        left = 0  # bytes of the current chunk still to come
        while True:
            if left:
                if not buffer:
                    if parts:
                        yield b"".join(parts)
                        parts.clear()
                        held = 0
                    await connection.fill(read_s, request)
                    continue
                piece = connection.take(min(left, MAX_PIECE_BYTES - held))
                parts.append(piece)
                held += len(piece)
                left -= len(piece)
                if held >= MAX_PIECE_BYTES:
                    yield b"".join(parts)
                    parts.clear()
                    held = 0
                if left:
                    continue
                if await _take_line(connection, 2, read_s, request):
                    raise httpx.RemoteProtocolError("malformed chunk", request=request)
            if parts and b"\n" not in buffer:  # the next size line is not here yet
                yield b"".join(parts)
                parts.clear()
                held = 0
            size = self._chunk_size(await _take_line(connection, MAX_LINE_BYTES, read_s,
                                                     request))
            if size == 0:
                if parts:
                    yield b"".join(parts)
                await self._trailers(connection)
                return
            left = size

    async def _trailers(self, connection: _Connection) -> None:
        taken = 0
        while line := await _take_line(connection, MAX_HEAD_BYTES, self._read_s,
                                       self._request):
            taken += len(line)  # trailers: not used, bounded like a head
            if taken > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("the trailers are too long",
                                                request=self._request)

    def _chunk_size(self, line: bytes) -> int:
        size_text = line.split(b";", 1)[0].strip()
        if not 0 < len(size_text) <= MAX_CHUNK_SIZE_DIGITS or size_text.strip(HEX_DIGITS):
            raise httpx.RemoteProtocolError("malformed chunk size", request=self._request)
        return int(size_text, 16)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            reusable = self._complete and self._framing.keep_alive
            self._transport._release(self._origin, connection, reusable)


class _NoCookies(httpx.Cookies):
    """A jar that stays empty: the ``Set-Cookie`` of an answer is not read."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing (httpx calls this after every response)."""


class _CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps and sends no cookies: a model API is stateless,
    and reading every answer's headers into a cookie jar costs as much client CPU as the lean
    transport's whole exchange."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise ValueError("this client keeps no cookies")


def lean_client(max_connections: int = 16) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose ``http://`` requests go through :class:`Http1Transport`
    (direct: ``HTTP_PROXY`` does not apply to them) and ``https://`` ones through httpx's own
    transport; each of the two bounds its own connections by ``max_connections``. It keeps no
    cookies."""
    return _CookielessClient(
        mounts={"http://": Http1Transport(max_connections=max_connections)},
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections // 2))
