"""The gunicorn worker of ``recourse serve``: gthread that buffers each request before a thread
sees it, and answers the errors gunicorn raises itself with problem details.

**Slow clients.**  A plain gthread worker hands a connection to a thread as soon as its first
bytes arrive; the thread then blocks until the whole request has come, so a few dozen clients
that send one byte every few seconds hold every thread and the service stops answering.  This
worker reads each request in its event loop instead, without blocking: a thread gets the
connection only once the request head (up to the blank line) and its body (``Content-Length``
bytes, or the chunked body up to its last chunk) are in memory, at most :data:`BUFFER_LIMIT`
bytes (beyond that the request goes on as it is, and the app's body limit answers 413).  A
request that is not complete :data:`READ_TIMEOUT` seconds after its first byte is answered 408
and its connection closed.  ``Expect: 100-continue`` is answered by the worker, so that clients
send their bodies at once.  The number of open connections per worker is gunicorn's
``worker_connections`` (1,000).

Requests that fail before the app sees them (a request line over 4,094 bytes: 414; more than 100
headers or one over 8,190 bytes: 431; a NUL byte in a header, obsolete line folding, a negative
or duplicate Content-Length, both Content-Length and Transfer-Encoding: 400; an unsupported
transfer coding: 501) are answered by gunicorn's own error writer, which sends HTML.  This worker
replaces that writer, in the worker process only, by one that sends the same status as an
``application/problem+json`` body like every other error of the service.
"""
from __future__ import annotations

import errno
import json
import re
import selectors
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from .problems import PROBLEM_TYPE, clip

SLUGS = {400: "malformed-request", 403: "forbidden", 408: "request-timeout", 414: "request-line-too-long",
         417: "expectation-failed", 431: "headers-too-large", 500: "internal-error", 501: "not-implemented",
         503: "unavailable"}
READ_TIMEOUT = 10.0
"""Seconds a request may take to arrive completely, from its first byte."""
BUFFER_LIMIT = 8 * 1024 * 1024
"""Most bytes of one request buffered before a thread takes over (the app's own body limit is 4 MiB)."""
HEAD_LIMIT = 64 * 1024
"""A request head longer than this goes on to gunicorn's parser, which refuses it (414 or 431)."""
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT = re.compile(rb"^expect[ \t]*:[ \t]*100-continue[ \t]*\r\n", re.I | re.M)


def _chunked_complete(body: bytes) -> bool:
    """Whether a chunked body holds its last (zero-size) chunk and the blank line after the trailers."""
    i = 0
    while True:
        end = body.find(b"\r\n", i)
        if end < 0:
            return False
        try:
            size = int(body[i:end].split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            return True  # malformed: gunicorn's parser answers it
        if size == 0:  # the last chunk: then optional trailer lines and a blank line
            return body.find(b"\r\n\r\n", end) >= 0
        i = end + 2 + size + 2
        if i > len(body):
            return False


def request_complete(buffer: bytes) -> bool:
    """Whether ``buffer`` holds a whole request (head and body), or enough that waiting is pointless:
    an over-long head, a body over :data:`BUFFER_LIMIT`, framing gunicorn must refuse (two or
    invalid Content-Lengths)."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buffer) > HEAD_LIMIT
    head, body = buffer[:head_end + 2], buffer[head_end + 4:]
    if _CHUNKED.search(head):
        return len(body) > BUFFER_LIMIT or _chunked_complete(body)
    lengths = _CONTENT_LENGTH.findall(head)
    if not lengths:
        return True
    if len(lengths) > 1 or not lengths[0].isdigit():
        return True
    size = int(lengths[0])
    return size > BUFFER_LIMIT or len(body) >= size


def problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response (Connection: close) with a problem-details body."""
    body = json.dumps({"type": PROBLEM_TYPE + SLUGS.get(status, "malformed-request"), "title": reason, "status": status,
                       "detail": clip(detail or reason)}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    return head + body


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same status, as problem details."""
    util.write_nonblock(sock, problem_bytes(int(status_int), reason, mesg))


class ProblemWorker(ThreadWorker):
    """gthread worker that buffers requests in its event loop and answers its own errors with
    problem details (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading: dict[TConn, list] = {}  # connection → [buffer, deadline, answered 100-continue]

    def init_process(self) -> None:
        util.write_error = write_problem  # the one writer gunicorn's handle_error calls
        super().init_process()

    # -------------------------------------------------------------- reading without a thread
    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))  # TConn: non-blocking

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection's next request is read in the loop too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn)
        self._on_bytes(conn, client)

    def _read(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        self.reading[conn] = [bytearray(), time.monotonic() + READ_TIMEOUT, False]
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: TConn, _client) -> None:
        state = self.reading.get(conn)
        if state is None:
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._drop(conn)
            return
        state[0] += data
        buffer = bytes(state[0])
        head_end = buffer.find(b"\r\n\r\n") + 4  # 3: the head has not ended yet
        complete = request_complete(buffer)
        if not complete:
            if not state[2] and head_end > 3 and _EXPECT.search(buffer[:head_end]):
                state[2] = True
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        if state[2]:  # answered here: gunicorn must not answer it again
            buffer = _EXPECT.sub(b"", buffer[:head_end], count=1) + buffer[head_end:]
        self._hand_off(conn, buffer)

    def _hand_off(self, conn: TConn, buffer: bytes) -> None:
        self.poller.unregister(conn.sock)
        del self.reading[conn]
        conn.init()  # blocking socket, the HTTP/1.x parser (created once per connection)
        conn.parser.unreader.unread(buffer)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _send(self, conn: TConn, data: bytes) -> None:
        try:
            conn.sock.send(data)
        except OSError:
            pass

    def _drop(self, conn: TConn, answer: bytes | None = None) -> None:
        self.poller.unregister(conn.sock)
        del self.reading[conn]
        if answer is not None:
            self._send(conn, answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also answer 408 to the requests that did not arrive in time, and close them; when the
        worker is stopping, close every connection whose request has not arrived (503)."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:
            for conn in list(self.reading):
                self._drop(conn, problem_bytes(503, "Service Unavailable", "the server is shutting down"))
            return
        late = [conn for conn, state in self.reading.items() if state[1] <= now]
        for conn in late:
            self._drop(conn, problem_bytes(408, "Request Timeout",
                                           f"the request did not arrive completely within {READ_TIMEOUT:g} s"))


WORKER_CLASS = f"{__name__}.ProblemWorker"
"""The ``worker_class`` setting that names :class:`ProblemWorker`."""
