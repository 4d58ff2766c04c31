"""A lean HTTP/1.1 transport for plain-HTTP origins, under an ``httpx.AsyncClient``.

The work backend's requests (the exact token count behind a quote, then the answer) go to a
model server beside the agent, over plain HTTP, three to a job. httpx's default transport spends
most of a request's client CPU in its machinery (a pool that checks every pooled connection on
every request, anyio cancel scopes, h11's state machine): about ten times what the exchange
itself needs. This transport keeps httpx's API (the backend takes an injected
``httpx.AsyncClient``; requests, responses, timeouts and exceptions are httpx's) and does the
exchange itself, on an asyncio protocol whose bytes wait in one buffer: a read takes what is
buffered at once, and only a read that must wait arms a timer:

- one request at a time per connection; idle connections are kept per origin and reused, last
  used first; a connection the server has closed (its EOF seen by the event loop, or found in
  the kernel by one ``MSG_PEEK``), one idle longer than ``idle_expiry_s`` (below common
  servers' keep-alive: llama.cpp's is 5 s), and one whose response said ``Connection: close``
  or ended without a length are not reused;
- bodies by ``Content-Length``, ``Transfer-Encoding: chunked`` (every chunk already buffered
  given in one piece), or until the server closes; request bodies likewise (chunked when httpx
  gives no length), waiting while the kernel's send buffer is full;
- httpx's timeouts (``connect``, ``read``, ``write``, ``pool``) are honoured and raise httpx's
  exceptions, as do refused connections, lost connections and malformed responses;
- ``max_connections`` bounds the connections open at once (a request waits for one at most
  ``pool`` seconds);
- a request cancelled or failed midway closes its connection: it is never reused.

Not handled (use httpx's default transport, e.g. through ``mounts``): TLS, proxies, HTTP/2,
``Upgrade``. A request is never sent twice: nothing is retried here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line + headers accepted from a server."""
MAX_CHUNK_SIZE_DIGITS = 15
HEX_DIGITS = b"0123456789abcdefABCDEF"
DEFAULT_IDLE_EXPIRY_S = 4.0
NO_BODY_STATUS = frozenset({204, 304})

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
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses); idempotent: called
        # by the loop and after the connect
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
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

    async def fill(self, read_s: float | None, request: httpx.Request) -> None:
        """Wait until more bytes (or the end) arrive; ``ReadTimeout`` after ``read_s``."""
        if self.eof:
            raise httpx.RemoteProtocolError("the server closed the connection early",
                                            request=request)
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

    def usable(self, now: float, expiry_s: float) -> bool:
        """Idle, fresh enough, and not closed by the server — its FIN may be in the kernel
        before the event loop has seen it: one peek, which never takes a byte."""
        if self.eof or self.buffer or self._transport is None or self._transport.is_closing() \
                or now - self.idle_since >= expiry_s:
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
        self._idle: dict[_Origin, list[_Connection]] = {}
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
        await self._take_slot(request, timeouts.pool)
        connection: _Connection | None = None
        try:
            origin = (request.url.host, request.url.port or 80)
            connection = await self._connection(origin, request, timeouts.connect)
            await _send(connection, request, head, chunked, timeouts.write)
            status, reason, headers = await _read_head(connection, request, timeouts.read)
            framing = _framing(request, status, headers)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        body = _ResponseBody(self, origin, connection, request, timeouts.read, framing)
        return httpx.Response(status, headers=headers, stream=body, request=request,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
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
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self._idle_expiry_s):
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
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc.strerror or exc}",
                                     request=request) from None
        return connection

    def _release(self, origin: _Origin, connection: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
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
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    lines += [name + b": " + value for name, value in request.headers.raw]
    lines += [b"", b""]
    head = b"\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
        raise httpx.LocalProtocolError("a request line or header holds a line break",
                                       request=request)
    return head


async def _send(connection: _Connection, request: httpx.Request, head: bytes, chunked: bool,
                write_s: float | None) -> None:
    if not chunked:
        body = await request.aread() if "content-length" in request.headers else b""
        await connection.write(head + body, write_s, request)
        return
    await connection.write(head, write_s, request)
    assert isinstance(request.stream, httpx.AsyncByteStream)
    async for part in request.stream:
        if part:
            await connection.write(b"%x\r\n%s\r\n" % (len(part), part), write_s, request)
    await connection.write(b"0\r\n\r\n", write_s, request)


# -- the response --------------------------------------------------------------------------


async def _read_head(connection: _Connection, request: httpx.Request, read_s: float | None
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The final response's status, reason and headers (interim 1xx responses skipped)."""
    while True:
        head = await _take_through(connection, b"\r\n\r\n", MAX_HEAD_BYTES, read_s, request)
        status, reason, headers = _parse_head(head, request)
        if not 100 <= status < 200 or status == 101:
            return status, reason, headers


async def _take_through(connection: _Connection, end: bytes, limit: int, read_s: float | None,
                        request: httpx.Request) -> bytes:
    """The buffered bytes up to and including ``end`` (waiting for them), at most ``limit``."""
    buffer = connection.buffer
    searched = 0
    while True:
        found = buffer.find(end, searched, limit)
        if found >= 0:
            taken = bytes(buffer[:found + len(end)])
            del buffer[:found + len(end)]
            return taken
        if len(buffer) > limit:
            raise httpx.RemoteProtocolError("a response line is too long", request=request)
        searched = max(0, len(buffer) - len(end) + 1)
        await connection.fill(read_s, request)


def _parse_head(head: bytes, request: httpx.Request
                ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() \
            or len(parts[1]) != 3:
        raise httpx.RemoteProtocolError("malformed status line", request=request)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise httpx.RemoteProtocolError("malformed response header", request=request)
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) == 3 else b"", headers


class _Framing:
    """How the response body ends: ``length`` bytes, chunked, or at the server's close."""

    __slots__ = ("chunked", "keep_alive", "length")

    def __init__(self, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


def _framing(request: httpx.Request, status: int, headers: list[tuple[bytes, bytes]]
             ) -> _Framing:
    length: int | None = None
    chunked = False
    close = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise httpx.RemoteProtocolError("malformed Content-Length", request=request)
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            close = close or not chunked
        elif lowered == b"connection":
            close = close or b"close" in value.lower()
    if status == 101:  # the connection now speaks another protocol: never reused
        return _Framing(0, False, False)
    if request.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
        return _Framing(0, False, not close)
    if chunked:
        return _Framing(None, True, not close)
    if length is not None:
        return _Framing(length, False, not close)
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
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        buffer = connection.buffer
        framing = self._framing
        if framing.chunked:
            async for part in self._chunks(connection):
                yield part
        elif framing.length is not None:
            left = framing.length
            while left:
                if not buffer:
                    await connection.fill(self._read_s, self._request)
                    continue
                part = bytes(buffer[:left])
                del buffer[:left]
                left -= len(part)
                yield part
        else:
            while True:
                if buffer:
                    part = bytes(buffer)
                    buffer.clear()
                    yield part
                elif connection.eof:
                    break
                else:
                    await connection.fill(self._read_s, self._request)
        self._complete = True

    async def _chunks(self, connection: _Connection) -> AsyncIterator[bytes]:
        """Every chunk already buffered in one piece; waits only when none is complete."""
        buffer = connection.buffer
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if parts:
                    yield b"".join(parts)
                    parts.clear()
                await self._more(connection, MAX_CHUNK_SIZE_DIGITS + 256)
                continue
            size = self._chunk_size(bytes(buffer[:line_end]))
            if size == 0:
                if parts:
                    yield b"".join(parts)
                del buffer[:line_end + 2]
                while await _take_through(connection, b"\r\n", MAX_HEAD_BYTES, self._read_s,
                                          self._request) != b"\r\n":
                    pass  # trailers: not used
                return
            start, stop = line_end + 2, line_end + 2 + size
            if len(buffer) < stop + 2:
                if parts:
                    yield b"".join(parts)
                    parts.clear()
                await connection.fill(self._read_s, self._request)
                continue
            if buffer[stop:stop + 2] != b"\r\n":
                raise httpx.RemoteProtocolError("malformed chunk", request=self._request)
            parts.append(bytes(buffer[start:stop]))
            del buffer[:stop + 2]

    async def _more(self, connection: _Connection, limit: int) -> None:
        if len(connection.buffer) > limit:
            raise httpx.RemoteProtocolError("a chunk line is too long", request=self._request)
        await connection.fill(self._read_s, self._request)

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


def lean_client(max_connections: int = 16) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose ``http://`` requests go through :class:`Http1Transport`
    (``https://`` ones through httpx's own transport, with the same bound)."""
    return httpx.AsyncClient(
        mounts={"http://": Http1Transport(max_connections=max_connections)},
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections // 2))
