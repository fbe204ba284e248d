"""The buffering worker's judgement of when a request has fully arrived (api/worker.py)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.worker import BUFFER_LIMIT, HEAD_LIMIT, problem_bytes, request_complete


def chunked(body: bytes, size: int) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@given(body=st.binary(max_size=300), cut=st.integers(0, 400), size=st.integers(1, 64), framing=st.sampled_from(["length", "chunked"]))
def test_a_request_is_complete_exactly_when_all_its_bytes_are_there(body, cut, size, framing):
    if framing == "length":
        request = b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    else:
        request = b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, size)
    cut = min(cut, len(request))
    assert request_complete(request)
    assert request_complete(request[:cut]) == (cut == len(request))


def test_requests_gunicorn_must_refuse_go_on_at_once():
    assert request_complete(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # no body
    assert request_complete(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")  # two lengths
    assert request_complete(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")  # invalid length
    assert request_complete(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (BUFFER_LIMIT + 1))  # the app answers 413
    assert request_complete(b"GET /" + b"a" * (HEAD_LIMIT + 1))  # no end of head in sight: gunicorn answers 414/431
    assert not request_complete(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")


def test_a_problem_response_is_complete_http():
    raw = problem_bytes(408, "Request Timeout", "late")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout") and b"application/problem+json" in head
    assert b"Content-Length: %d" % len(body) in head and b'"status": 408' in body
