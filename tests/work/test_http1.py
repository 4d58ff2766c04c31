"""The lean HTTP/1.1 transport against raw servers on 127.0.0.1 that answer byte by byte as
each case scripts: keep-alive and its ends, every body framing, and every failure as httpx's
own exception (the OpenAI backend's cases run over it too: tests/work/test_openai_backend.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from bot.work.http1 import Http1Transport, lean_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """Runs ``handler`` once per connection; counts connections and keeps what was read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return head, body
            body += data[:-2]
    length = 0
    for line in lowered.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def keep_alive(answer: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
    return handler


def once(answer: bytes, then_close: bool = True) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if not then_close:
            await reader.read()
    return handler


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Http1Transport(max_connections=2)) as http:
        yield http


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_alive(OK)) as server:
        for _ in range(3):
            response = await client.post(server.url + "/x?y=1", json={"a": 1})
            assert (response.status_code, response.text) == (200, "ok")
        assert server.connections == 1


async def test_request_bytes_on_the_wire(client: httpx.AsyncClient) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        yield b"first,"
        yield b""
        yield b"second"

    async with RawServer(handler) as server:
        await client.post(server.url + "/a/b?q=%20", json={"k": "v"}, headers={"X-T": "1"})
        await client.post(server.url + "/up", content=parts())
    head, body = seen[0]
    assert head.startswith(b"POST /a/b?q=%20 HTTP/1.1\r\n")
    assert b"\r\nx-t: 1\r\n" in head.lower() and b"\r\nhost: 127.0.0.1:" in head.lower()
    assert body == b'{"k":"v"}'
    head, body = seen[1]
    assert b"transfer-encoding: chunked" in head.lower() and body == b"first,second"


async def test_connection_close_and_close_delimited_bodies_are_not_reused(
        client: httpx.AsyncClient) -> None:
    answers = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]
    for answer in answers:
        async with RawServer(once(answer, then_close=answer.endswith(b"end"))) as server:
            texts = [(await client.get(server.url)).text for _ in range(2)]
            assert texts == [answer.split(b"\r\n\r\n")[1].decode()] * 2
            assert server.connections == 2


async def test_a_connection_the_server_closed_is_not_reused(client: httpx.AsyncClient) -> None:
    async with RawServer(once(OK)) as server:  # answers one request, then closes
        assert (await client.get(server.url)).text == "ok"
        assert (await client.get(server.url)).text == "ok"
        assert server.connections == 2


async def test_idle_connections_expire() -> None:
    async with httpx.AsyncClient(transport=Http1Transport(idle_expiry_s=0.0)) as http, \
            RawServer(keep_alive(OK)) as server:
        for _ in range(2):
            await http.get(server.url)
        assert server.connections == 2


async def test_chunked_response_with_extensions_and_trailers(client: httpx.AsyncClient) -> None:
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;name=x\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: y\r\n\r\n")
    async with RawServer(keep_alive(answer)) as server:
        for _ in range(2):
            assert (await client.get(server.url)).text == "hello world"
        assert server.connections == 1


async def test_streamed_lines_arrive_as_sent(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: text/event-stream\r\n\r\n")
        for n in range(3):
            line = b"data: %d\n\n" % n
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with RawServer(handler) as server, client.stream("POST", server.url) as response:
        lines = [line async for line in response.aiter_lines() if line]
    assert lines == ["data: 0", "data: 1", "data: 2"]


async def test_no_body_answers_and_interim_responses(client: httpx.AsyncClient) -> None:
    answers = [b"HTTP/1.1 204 No Content\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    async with RawServer(keep_alive(answers[0])) as server:
        assert [(await client.delete(server.url)).status_code for _ in range(2)] == [204, 204]
        assert server.connections == 1
    async with RawServer(keep_alive(answers[1])) as server:
        response = await client.get(server.url)
        assert (response.status_code, response.text) == (200, "ok")
        assert response.extensions["reason_phrase"] == b"OK"
    async with RawServer(keep_alive(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")) as server:
        assert [(await client.get(server.url)).status_code for _ in range(2)] == [101, 101]
        assert server.connections == 2  # a switched connection is never reused


async def test_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")


async def test_a_silent_server_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with RawServer(silent) as server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5.0, read=0.1))


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"SMTP 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n X: folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
    b"",
    b"HTTP/1.1 200 OK\r\n",
])
async def test_broken_answers_are_remote_protocol_errors(
        client: httpx.AsyncClient, answer: bytes) -> None:
    async with RawServer(once(answer)) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_a_header_with_a_line_break_is_never_sent(client: httpx.AsyncClient) -> None:
    async with RawServer(keep_alive(OK)) as server:
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(server.url, headers={"X": "a\r\nInjected: yes"})
        assert server.connections == 0
        assert (await client.get(server.url)).text == "ok"  # the slot came back


async def test_only_plain_http(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.get("https://127.0.0.1:9/")


async def test_the_pool_bound_waits_then_times_out() -> None:
    async with httpx.AsyncClient(transport=Http1Transport(max_connections=1)) as http, \
            RawServer(keep_alive(OK)) as server:
        async with http.stream("GET", server.url) as held:
            with pytest.raises(httpx.PoolTimeout):
                await http.get(server.url, timeout=httpx.Timeout(5.0, pool=0.1))
            waiting = asyncio.create_task(http.get(server.url))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await held.aread()
        assert (await waiting).text == "ok"
        assert server.connections == 1  # the held connection, read to its end, served the next


async def test_unread_or_cancelled_bodies_close_their_connection() -> None:
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"cd")
            await writer.drain()

    async with httpx.AsyncClient(transport=Http1Transport(max_connections=1)) as http, \
            RawServer(slow_body) as server:
        async with http.stream("GET", server.url):
            pass  # closed unread
        reading = asyncio.create_task(http.get(server.url))
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert (await http.get(server.url)).text == "abcd"  # the one slot is free again
        assert server.connections == 3


async def test_lean_client_sends_https_elsewhere() -> None:
    async with lean_client() as http:
        with pytest.raises(httpx.ConnectError):  # httpx's own transport: nothing listens
            await http.get("https://127.0.0.1:9/", timeout=2.0)


async def test_lean_client_keeps_and_sends_no_cookies() -> None:
    heads: list[bytes] = []
    answer = b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 2\r\n\r\nok"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append((await read_request(reader))[0])
            writer.write(answer)
            await writer.drain()

    async with RawServer(handler) as server, lean_client() as http:
        first = await http.get(server.url)
        await http.get(server.url)
        assert first.cookies["s"] == "1"  # the answer's own cookies are still readable
        assert not http.cookies
        with pytest.raises(ValueError, match="no cookies"):
            http.cookies = {"a": "b"}
    assert len(heads) == 2 and all(b"cookie:" not in head.lower() for head in heads)


async def test_a_closed_transport_closes_its_idle_connections() -> None:
    transport = Http1Transport()
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read()  # returns when the client closes
        closed.set()

    async with RawServer(handler) as server:
        url = server.url
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(url)).text == "ok"
        await asyncio.wait_for(closed.wait(), 5)
    with pytest.raises(RuntimeError):
        await transport.handle_async_request(httpx.Request("GET", url))


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n",
])
async def test_answers_dribbled_byte_by_byte(client: httpx.AsyncClient, answer: bytes) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            for i in range(len(answer)):
                writer.write(answer[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)

    async with RawServer(dribble) as server:
        for _ in range(2):
            assert (await client.get(server.url)).text == "hello world"
        assert server.connections == 1


async def test_a_large_body_waits_for_a_slow_reader_and_a_stuck_one_times_out(
        client: httpx.AsyncClient) -> None:
    body = b"z" * (8 << 20)
    received: list[int] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while length:
            await asyncio.sleep(0.001)
            part = await reader.read(min(length, 65536))
            length -= len(part)
            received.append(len(part))
        writer.write(OK)
        await writer.drain()

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with RawServer(slow) as server:
        assert (await client.post(server.url, content=body)).text == "ok"
        assert sum(received) == len(body)
    async with RawServer(stuck) as server:
        with pytest.raises(httpx.WriteTimeout):
            await client.post(server.url, content=body, timeout=httpx.Timeout(5.0, write=0.2))


async def test_a_server_hanging_up_midway_through_the_body_is_a_transport_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1 << 20)
        writer.transport.abort()

    async with httpx.AsyncClient(transport=Http1Transport(max_connections=1)) as http, \
            RawServer(hang_up) as server:
        with pytest.raises((httpx.WriteError, httpx.RemoteProtocolError)):
            await http.post(server.url, content=b"z" * (16 << 20))
        async with RawServer(keep_alive(OK)) as other:
            assert (await http.get(other.url)).text == "ok"  # the one slot came back


async def test_a_huge_chunk_is_handed_up_as_it_arrives(client: httpx.AsyncClient) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\n")
        while True:
            writer.write(b"z" * 65536)
            await writer.drain()

    got = 0
    async with asyncio.timeout(60), RawServer(trickle) as server, \
            client.stream("GET", server.url) as response:  # (a guard: held whole, it hung)
        async for piece in response.aiter_raw():
            assert len(piece) <= 64 * 1024
            got += len(piece)
            if got >= 4 << 20:  # the reader decides when it has had enough
                break
    assert got >= 4 << 20


async def test_bytes_arriving_on_an_idle_connection_close_it(client: httpx.AsyncClient) -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")  # unasked
            await writer.drain()

    async with RawServer(chatty) as server:
        assert (await client.get(server.url)).text == "ok"
        await asyncio.sleep(0.2)
        assert (await client.get(server.url)).text == "ok"  # never the stale answer
        assert server.connections == 2


async def test_an_early_answer_is_the_outcome(client: httpx.AsyncClient) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
        await writer.drain()
        writer.write_eof()
        while await reader.read(65536):
            pass  # discarded
        writer.transport.abort()

    async with RawServer(refuse) as server:
        for size in (1000, 8 << 20):
            response = await client.post(server.url, content=b"z" * size)
            assert (response.status_code, response.text) == (413, "too big!")


async def test_http_1_0_answers_close_unless_kept_alive(client: httpx.AsyncClient) -> None:
    for answer, connections in (
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 2),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 1)):
        async with RawServer(keep_alive(answer)) as server:
            assert [(await client.get(server.url)).text for _ in range(2)] == ["ok", "ok"]
            assert server.connections == connections


async def test_a_reset_is_not_the_end_of_a_close_delimited_body(
        client: httpx.AsyncClient) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npartial-")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with RawServer(reset) as server:
        with pytest.raises(httpx.ReadError):
            await client.get(server.url)


async def test_idle_connections_are_bounded_across_origins() -> None:
    transport = Http1Transport(max_connections=2)
    servers = [RawServer(keep_alive(OK)) for _ in range(4)]
    async with httpx.AsyncClient(transport=transport) as http:
        for server in servers:
            await server.__aenter__()
        try:
            for server in servers:
                await asyncio.gather(http.get(server.url), http.get(server.url))
            last = ("127.0.0.1", int(servers[-1].url.rsplit(":", 1)[1]))
            assert [o for o, _ in transport._idle] == [last, last]  # the latest two kept
        finally:
            for server in servers:
                await server.__aexit__()


@pytest.mark.parametrize("answer,text", [
    (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n", "ok"),
])
async def test_bare_line_feeds_are_read_as_h11_reads_them(
        client: httpx.AsyncClient, answer: bytes, text: str) -> None:
    async with RawServer(keep_alive(answer)) as server:
        assert [(await client.get(server.url)).text for _ in range(2)] == [text, text]
        assert server.connections == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
])
async def test_ambiguous_framing_is_never_reused(client: httpx.AsyncClient,
                                                answer: bytes) -> None:
    async with RawServer(once(answer)) as server:  # the second framing ends at the close
        response = await client.get(server.url)
        assert response.content.endswith(b"ok")
        await client.get(server.url)
        assert server.connections == 2


@pytest.mark.parametrize("first,then", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", b"T: " + b"y" * 1000 + b"\r\n"),
    (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
])
async def test_endless_trailers_or_interim_answers_are_refused(
        client: httpx.AsyncClient, first: bytes, then: bytes) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(first)
        while True:
            writer.write(then * 10)
            await writer.drain()

    async with RawServer(endless) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_what_the_transport_refuses_before_connecting(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.get("http://" + "a" * 64 + ".example/")

    async def parts() -> AsyncIterator[bytes]:
        yield b"data"

    async with RawServer(keep_alive(OK)) as server:
        request = httpx.Request("POST", server.url, content=parts())
        del request.headers["transfer-encoding"]
        with pytest.raises(httpx.LocalProtocolError):
            await client.send(request)
        assert server.connections == 0


async def test_an_empty_body_left_unread_keeps_its_connection(
        client: httpx.AsyncClient) -> None:
    async with RawServer(keep_alive(b"HTTP/1.1 204 No Content\r\n\r\n")) as server:
        for _ in range(2):
            async with client.stream("GET", server.url) as response:
                assert response.status_code == 204
        assert server.connections == 1
