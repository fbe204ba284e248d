"""`recourse serve` as a real server on loopback: HTTP round trips, auth, and answers surviving kill -9."""
from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from api.keys import new_key
from benchmarks.http import Server, free_port, group_cpu_seconds, request, run_level

DENIED = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())


@pytest.fixture(scope="module")
def server(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("serve") / "log.sqlite3"
    srv = Server(free_port(), new_key(), db, args=["--bundle", str(german_bundle.path), "--workers", "2", "--threads", "4"])
    srv.start()
    yield srv
    srv.kill(signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.integration
def test_http_round_trip(server):
    status, body = request(server.port, "GET", "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = request(server.port, "POST", "/v1/recourse", {"applicant": DENIED}, server.key)
    assert status == 200
    answer = json.loads(body)
    assert answer["status"] == "recourse_found" and answer["reasons"]
    status, stored = request(server.port, "GET", f"/v1/recourse/{answer['id']}", None, server.key)
    assert status == 200 and stored == body
    status, body = request(server.port, "POST", "/v1/recourse", {"applicant": DENIED}, "wrong")
    assert status == 401 and json.loads(body)["status"] == 401
    status, body = request(server.port, "POST", "/v1/recourse", {"applicant": {**DENIED, "age": "old"}}, server.key)
    assert status == 422 and json.loads(body)["errors"][0]["pointer"] == "/applicant/age"
    status, body = request(server.port, "GET", "/metrics")
    assert status == 200 and b"recourse_http_requests_total" in body


@pytest.mark.slow
@pytest.mark.integration
def test_chunked_body_over_the_limit_is_413_and_long_ids_are_json_404(server):
    body = json.dumps({"applicant": DENIED, "pad": "x" * (5 * 1024 * 1024)}).encode()  # over the 4 MiB default
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/v1/recourse", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and json.loads(response.read())["status"] == 413
    except (BrokenPipeError, ConnectionResetError):
        # the server answered 413 and closed while the client was still sending the rest of the
        # body (a race of the two sides): the body was refused all the same; the service stays up
        assert request(server.port, "GET", "/healthz", None, server.key)[0] == 200
    finally:
        conn.close()
    # ids up to gunicorn's request-line limit (4094 bytes) reach the app: JSON 404; longer lines get 414 (below)
    status, text = request(server.port, "GET", "/v1/recourse/" + "a" * 4000, None, server.key)
    assert status == 404 and "32 hexadecimal digits" in json.loads(text)["detail"]


def raw_exchange(port: int, payload: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are; (status, content type, body) of the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


BAD_FRAMES = {
    "request line over 4,094 bytes": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "a header over 8,190 bytes": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "more than 100 headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    "a NUL byte in a header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "obsolete line folding": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "a negative Content-Length": (b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    "Content-Length and Transfer-Encoding": (b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "two Content-Length headers": (b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
}


@pytest.mark.slow
@pytest.mark.integration
def test_requests_refused_before_the_app_get_problem_details_not_html(server):
    for what, (payload, expected) in BAD_FRAMES.items():
        status, content_type, body = raw_exchange(server.port, payload)
        assert status == expected, what
        assert content_type == "application/problem+json", (what, content_type, body[:80])
        problem = json.loads(body)
        assert problem["status"] == expected and problem["type"].startswith("urn:recourse:problem:") and problem["detail"], what
    assert request(server.port, "GET", "/healthz", None, server.key)[0] == 200


@pytest.mark.slow
@pytest.mark.integration
def test_answers_survive_kill_9(server):
    answers = []
    for duration in (30, 33, 36):
        status, body = request(server.port, "POST", "/v1/recourse", {"applicant": {**DENIED, "duration": duration}}, server.key)
        assert status == 200
        answers.append((json.loads(body)["id"], body))
    server.kill(signal.SIGKILL)
    server.start()
    for answer_id, body in answers:
        assert request(server.port, "GET", f"/v1/recourse/{answer_id}", None, server.key) == (200, body)


@pytest.mark.integration
def test_serve_refuses_to_start_without_keys_or_with_a_bad_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv("RECOURSE_API_KEY", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["serve", "--port", "1"])
    assert result.exit_code == 2 and "no API keys" in result.output
    result = runner.invoke(cli.app, ["serve", "--no-auth", "--bundle", str(tmp_path)])
    assert result.exit_code == 2 and "not a bundle" in result.output
    keys = tmp_path / "keys"
    keys.write_text("alice nonsense\n")
    result = runner.invoke(cli.app, ["serve", "--api-keys", str(keys)])
    assert result.exit_code == 2 and "line 1" in result.output


def test_keys_new_prints_a_key_and_its_digest():
    from api.keys import hash_key

    result = CliRunner().invoke(cli.app, ["keys", "new", "--name", "lender"])
    assert result.exit_code == 0
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    key, entry = lines["key"].strip(), lines["key file"].strip()
    assert entry == f"lender {hash_key(key)}"


@pytest.mark.slow
@pytest.mark.integration
def test_start_and_stop_say_so_promptly(german_bundle, tmp_path):
    import os
    import time

    srv = Server(free_port(), new_key(), tmp_path / "log.sqlite3",
                 args=["--bundle", str(german_bundle.path), "--workers", "2", "--threads", "2"]).start()
    started = time.perf_counter()
    os.kill(srv.process.pid, signal.SIGTERM)  # the arbiter only, as a supervisor does
    srv.process.wait(timeout=30)
    seconds = time.perf_counter() - started
    text = srv.process.stderr.read().decode()
    assert "recourse service starting on http://127.0.0.1" in text
    assert "listening on http://127.0.0.1" in text and text.count("ready: worker") == 2
    assert text.rstrip().endswith("recourse service stopped") and seconds < 10, (seconds, text)


@pytest.mark.slow
@pytest.mark.integration
def test_forty_slow_clients_for_forty_seconds_do_not_slow_a_normal_client(server):
    """40 connections that send one byte every 2 s (half in the head, half in a body), reopened
    whenever the server closes them: /healthz and POST /v1/recourse still answer within 1 s."""
    import socket
    import threading
    import time

    stop = threading.Event()

    def slow(head: bytes, filler: bytes) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    sock.sendall(head)
                    for byte in filler:
                        if stop.wait(2):
                            break
                        sock.send(bytes([byte]))
            except OSError:
                pass  # closed by the server (408 after its read timeout): open another

    heads = [(b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 100),
             (b"POST /v1/recourse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
              b"a" * 1000)]
    threads = [threading.Thread(target=slow, args=heads[i % 2], daemon=True) for i in range(40)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        worst, rounds, end = 0.0, 0, time.monotonic() + 40
        while time.monotonic() < end:
            for method, path, body in (("GET", "/healthz", None), ("POST", "/v1/recourse", {"applicant": DENIED})):
                started = time.perf_counter()
                status, _ = request(server.port, method, path, body, server.key)
                worst = max(worst, time.perf_counter() - started)
                assert status == 200, (method, path, status)
            rounds += 1
            time.sleep(0.5)
    finally:
        stop.set()
    assert rounds >= 40 and worst < 1.0, (rounds, worst)


@pytest.mark.slow
@pytest.mark.integration
def test_the_load_test_tells_the_cpu_time_per_request(server):
    """What a closed-loop level costs in CPU per answered request, server and clients apart (the
    figure to set against the machine's budget: cores × latency / clients)."""
    pool = iter([{**DENIED, "duration": d} for d in range(6, 72)] * 50)
    level = run_level(server.port, server.key, pool, 2, 2.0, cpu=server.cpu_seconds).to_dict()
    assert level["requests"] > 0 and level["errors"] == 0
    assert level["server_cpu_ms"] > 0 and level["client_cpu_ms"] > 0
    assert level["server_cpu_ms"] < 2 * 2000.0 / level["requests"] + 50  # at most both cores' time, per request
    assert run_level(server.port, server.key, pool, 1, 1.0).to_dict()["server_cpu_ms"] is None  # not asked: not measured


def test_cpu_seconds_of_a_process_group_count_its_processes():
    import os
    import time

    start = time.process_time()
    while time.process_time() - start < 0.3:
        pass
    mine = group_cpu_seconds(os.getpgid(0))
    assert mine is not None and mine >= 0.25
    assert group_cpu_seconds(2**22 + 12345) == 0.0  # no such group: nothing counted
