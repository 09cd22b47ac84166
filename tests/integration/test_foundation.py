"""The foundation every larder server shares, as a user sees it from grpcio:
health, TLS/mTLS, unknown methods, message limits, malformed requests with
Feast's error JSON, the Debug test service (unary and all three streaming
shapes, deadlines), graceful shutdown, JSON logging, config loading and the
CLI's exit codes. Plus the fixture itself (real Redis and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
import queue

import grpc
import pytest

import fixture

KINDS = fixture.KINDS
T = 10  # seconds: deadline for calls that must answer at once; a hang fails
BIG = [("grpc.max_send_message_length", 64 << 20),
       ("grpc.max_receive_message_length", 64 << 20)]
GARBAGE = b"\x0a\xff\xff\xff\xff\xff"


def serving(pb, ch) -> None:
    resp = pb.Health(ch).Check(pb.health.HealthCheckRequest(), timeout=T)
    assert resp.status == pb.SERVING


def assert_serving(pb, server) -> None:
    with server.channel() as ch:
        serving(pb, ch)


def assert_slept(resp, millis: int) -> None:
    """SleepResponse.slept_millis is the time the server measured: at least
    the requested millis, and not wildly more (a slow or stuck sleeper)."""
    assert millis <= resp.slept_millis < millis + 2000, (resp.slept_millis, millis)


def rpc_error(fn, *a, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*a, **kw)
    return ei.value


def feast_json(details: str) -> dict:
    """Parse Feast's error JSON; keys must be module, class, message in that
    order (Feast's clients rebuild the exception from it)."""
    pairs = json.loads(details, object_pairs_hook=list)
    assert [k for k, _ in pairs] == ["module", "class", "message"], details
    d = dict(pairs)
    assert d["module"] == "feast.errors", details
    assert isinstance(d["class"], str) and d["class"], details
    assert isinstance(d["message"], str) and d["message"], details
    return d


def status_details(pb, err: grpc.RpcError):
    """The google.rpc.Status from the grpc-status-details-bin trailer."""
    md = err.trailing_metadata() or ()
    vals = [v for k, v in md if k == "grpc-status-details-bin"]
    assert len(vals) == 1, f"expected one grpc-status-details-bin trailer, got {md!r}"
    return pb.status.Status.FromString(vals[0])


def check_rich_error(pb, err: grpc.RpcError, code: grpc.StatusCode) -> dict:
    """err has code, Feast JSON details, and a matching google.rpc.Status
    trailer carrying an ErrorInfo{reason=class, domain=module}."""
    assert err.code() == code, f"{err.code()}: {err.details()}"
    d = feast_json(err.details())
    st = status_details(pb, err)
    assert st.code == code.value[0]
    assert st.message == err.details()
    infos = []
    for any_ in st.details:
        if any_.Is(pb.error_details.ErrorInfo.DESCRIPTOR):
            info = pb.error_details.ErrorInfo()
            any_.Unpack(info)
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo detail in {st!r}"
    assert infos[0].reason == d["class"]
    assert infos[0].domain == d["module"]
    return d


# --------------------------------------------------------------------------
# health over plaintext, TLS and mTLS


@pytest.mark.parametrize("kind", KINDS)
def test_health_plaintext(larder, pb, kind):
    s = larder(kind, debug=False)
    assert_serving(pb, s)


@pytest.mark.parametrize("kind", KINDS)
def test_health_tls(larder, pb, tls, kind):
    s = larder(kind, tls=tls, debug=False)
    with s.channel() as ch:
        serving(pb, ch)
    # TLS is really on: a plaintext client gets no answer.
    with grpc.insecure_channel(s.target) as ch:
        err = rpc_error(pb.Health(ch).Check, pb.health.HealthCheckRequest(), timeout=T)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    # and the certificate is checked by the client: a different CA fails.
    creds = grpc.ssl_channel_credentials(root_certificates=tls.read("rogue_ca"))
    with grpc.secure_channel(s.target, creds) as ch:
        err = rpc_error(pb.Health(ch).Check, pb.health.HealthCheckRequest(), timeout=T)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert_serving(pb, s)


@pytest.mark.parametrize("kind", KINDS)
def test_health_mtls(larder, pb, tls, kind):
    s = larder(kind, tls=tls, mtls=True, debug=False)
    req = pb.health.HealthCheckRequest()
    # no client certificate: rejected
    with s.channel(client_cert=False) as ch:
        err = rpc_error(pb.Health(ch).Check, req, timeout=T)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{err.code()}: {err.details()}"
    # a certificate from a CA the server does not trust: rejected
    creds = grpc.ssl_channel_credentials(root_certificates=tls.read("ca"),
                                         private_key=tls.read("rogue_key"),
                                         certificate_chain=tls.read("rogue_cert"))
    with grpc.secure_channel(s.target, creds) as ch:
        err = rpc_error(pb.Health(ch).Check, req, timeout=T)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, f"{err.code()}: {err.details()}"
    # a certificate signed by the CA: SERVING
    with s.channel() as ch:
        serving(pb, ch)


@pytest.mark.parametrize("kind", KINDS)
def test_health_watch_and_unknown_service(larder, pb, kind):
    s = larder(kind, debug=False)
    with s.channel() as ch:
        h = pb.Health(ch)
        it = h.Watch(pb.health.HealthCheckRequest(), timeout=T)
        first = next(it)
        assert first.status == pb.SERVING
        it.cancel()

        err = rpc_error(h.Check, pb.health.HealthCheckRequest(service="no.such.Service"), timeout=T)
        assert err.code() == grpc.StatusCode.NOT_FOUND

        it = h.Watch(pb.health.HealthCheckRequest(service="no.such.Service"), timeout=T)
        first = next(it)
        assert first.status == pb.SERVICE_UNKNOWN
        it.cancel()
        serving(pb, ch)


# --------------------------------------------------------------------------
# unknown methods, size limits, malformed requests


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_method_is_unimplemented(larder, pb, kind):
    s = larder(kind)
    with s.channel() as ch:
        for method in ("/larder.nope.Nope/Missing", "/grpc.health.v1.Health/NoSuchMethod",
                       "/larder.debug.Debug/NoSuchMethod"):
            t0 = time.monotonic()
            err = rpc_error(ch.unary_unary(method), b"", timeout=T)
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED, f"{method}: {err.code()}"
            assert time.monotonic() - t0 < 5, f"{method}: UNIMPLEMENTED took too long"
        # a streaming call to an unknown method, too
        it = ch.unary_stream("/larder.nope.Nope/Stream")(b"", timeout=T)
        with pytest.raises(grpc.RpcError) as ei:
            list(it)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        serving(pb, ch)


def test_oversized_request_is_resource_exhausted(larder, pb):
    s = larder("online", "--max-message-bytes", "1048576")
    with s.channel(options=BIG) as ch:
        dbg = pb.Debug(ch)
        err = rpc_error(dbg.Sleep, pb.debug.SleepRequest(millis=0, pad=b"x" * (2 << 20)), timeout=T)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{err.code()}: {err.details()}"
        # just under the limit is accepted: the limit is the flag, not lower
        r = dbg.Sleep(pb.debug.SleepRequest(millis=1, pad=b"y" * 1_000_000), timeout=T)
        assert_slept(r, 1)
        serving(pb, ch)


def test_default_message_limit_is_16mib(larder, pb):
    s = larder("online")
    with s.channel(options=BIG) as ch:
        dbg = pb.Debug(ch)
        r = dbg.Sleep(pb.debug.SleepRequest(millis=0, pad=b"x" * (15 << 20)), timeout=30)
        assert_slept(r, 0)
        err = rpc_error(dbg.Sleep, pb.debug.SleepRequest(millis=0, pad=b"x" * (17 << 20)), timeout=30)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{err.code()}: {err.details()}"
        serving(pb, ch)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_bytes_are_invalid_argument(larder, pb, kind):
    s = larder(kind)
    with s.channel() as ch:
        for method in ("/grpc.health.v1.Health/Check", "/larder.debug.Debug/Sleep"):
            err = rpc_error(ch.unary_unary(method), GARBAGE, timeout=T)
            check_rich_error(pb, err, grpc.StatusCode.INVALID_ARGUMENT)
        # a server-streaming method with a malformed request, too
        it = ch.unary_stream("/larder.debug.Debug/Count")(GARBAGE, timeout=T)
        with pytest.raises(grpc.RpcError) as ei:
            list(it)
        check_rich_error(pb, ei.value, grpc.StatusCode.INVALID_ARGUMENT)
        serving(pb, ch)


def test_garbage_in_client_stream_is_invalid_argument(larder, pb):
    s = larder("online")
    with s.channel() as ch:
        for method, kind in (("/larder.debug.Debug/Sum", "stream_unary"),
                             ("/larder.debug.Debug/Echo", "stream_stream")):
            msgs = [pb.debug.Number(value=1).SerializeToString(), GARBAGE]
            if kind == "stream_unary":
                err = rpc_error(ch.stream_unary(method), iter(msgs), timeout=T)
            else:
                with pytest.raises(grpc.RpcError) as ei:
                    list(ch.stream_stream(method)(iter(msgs), timeout=T))
                err = ei.value
            check_rich_error(pb, err, grpc.StatusCode.INVALID_ARGUMENT)
        serving(pb, ch)


# --------------------------------------------------------------------------
# the Debug service


def test_debug_sleep(larder, pb):
    s = larder("online")
    with s.channel() as ch:
        dbg = pb.Debug(ch)
        t0 = time.monotonic()
        r = dbg.Sleep(pb.debug.SleepRequest(millis=150), timeout=T)
        assert_slept(r, 150)
        assert time.monotonic() - t0 >= 0.15
        assert_slept(dbg.Sleep(pb.debug.SleepRequest(), timeout=T), 0)


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL])
def test_debug_sleep_fail_code(larder, pb, code):
    s = larder("online")
    with s.channel() as ch:
        err = rpc_error(pb.Debug(ch).Sleep,
                        pb.debug.SleepRequest(millis=10, fail_code=code.value[0]), timeout=T)
        check_rich_error(pb, err, code)
        serving(pb, ch)


def test_debug_count_streams_in_order(larder, pb):
    s = larder("online")
    with s.channel(options=BIG) as ch:
        dbg = pb.Debug(ch)
        got = list(dbg.Count(pb.debug.CountRequest(n=500, pad_bytes=100), timeout=T))
        assert [m.seq for m in got] == list(range(500))
        assert all(len(m.pad) == 100 for m in got)
        assert list(dbg.Count(pb.debug.CountRequest(n=0), timeout=T)) == []
        # large messages
        got = list(dbg.Count(pb.debug.CountRequest(n=5, pad_bytes=1 << 20), timeout=T))
        assert [m.seq for m in got] == list(range(5))
        assert all(len(m.pad) == 1 << 20 for m in got)


def test_debug_count_cancel_midstream(larder, pb):
    s = larder("online")
    with s.channel() as ch:
        it = pb.Debug(ch).Count(pb.debug.CountRequest(n=1_000_000, pad_bytes=100), timeout=T)
        for i in range(10):
            assert next(it).seq == i
        it.cancel()
        serving(pb, ch)


def test_debug_sum_client_stream(larder, pb):
    s = larder("online")
    values = [(i * 3_000_000_007) * (-1 if i % 3 == 0 else 1) for i in range(1, 1001)]
    with s.channel() as ch:
        dbg = pb.Debug(ch)
        r = dbg.Sum((pb.debug.Number(value=v) for v in values), timeout=T)
        assert r.value == sum(values)
        assert dbg.Sum(iter(()), timeout=T).value == 0


def test_debug_echo_bidi_in_order(larder, pb):
    s = larder("online")
    with s.channel() as ch:
        dbg = pb.Debug(ch)
        values = [i * 7 - 3000 for i in range(1000)]
        got = [m.value for m in dbg.Echo((pb.debug.Number(value=v) for v in values), timeout=T)]
        assert got == values

        # ping-pong: each message is echoed before the next one is sent, so
        # the server answers as it reads rather than after the stream ends.
        q: "queue.Queue" = queue.Queue()

        def requests():
            while True:
                v = q.get()
                if v is None:
                    return
                yield pb.debug.Number(value=v)

        it = dbg.Echo(requests(), timeout=T)
        for v in range(50):
            q.put(v)
            assert next(it).value == v
        q.put(None)
        assert list(it) == []


def test_client_deadline_exceeded(larder, pb):
    s = larder("online")
    with s.channel() as ch:
        dbg = pb.Debug(ch)
        t0 = time.monotonic()
        err = rpc_error(dbg.Sleep, pb.debug.SleepRequest(millis=3000), timeout=0.3)
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 2.5
        serving(pb, ch)
        assert_slept(dbg.Sleep(pb.debug.SleepRequest(millis=5), timeout=T), 5)
        # the abandoned handler finishes in the background; still healthy after
        time.sleep(3.0)
        serving(pb, ch)


# --------------------------------------------------------------------------
# graceful shutdown


def _connected_debug(pb, s):
    ch = s.channel()
    serving(pb, ch)  # the connection is up before the burst
    return ch, pb.Debug(ch)


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_drains_in_flight_calls(larder, pb, kind):
    s = larder(kind, "--grace-period", "1")
    ch, dbg = _connected_debug(pb, s)
    try:
        futs = [dbg.Sleep.future(pb.debug.SleepRequest(millis=200), timeout=20) for _ in range(100)]
        time.sleep(0.1)
        pending = sum(not f.done() for f in futs)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        assert pending >= 50, "the calls finished before SIGTERM: the test proves nothing"
        errors = []
        for f in futs:
            try:
                assert_slept(f.result(), 200)
            except grpc.RpcError as e:
                errors.append(f"{e.code()}: {e.details()}")
        assert not errors, f"{len(errors)} of 100 in-flight calls failed: {errors[:3]}"
        rc = s.wait(timeout=10)
        took = time.monotonic() - t0
        assert rc == 0, s.stderr_tail()
        assert took < 1 + 2, f"exit took {took:.2f}s after SIGTERM"
        s.check_sanitizers()
    finally:
        ch.close()


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_cancels_after_grace(larder, pb, kind):
    grace = 1.0
    s = larder(kind, "--grace-period", "1")
    ch, dbg = _connected_debug(pb, s)
    try:
        futs = [dbg.Sleep.future(pb.debug.SleepRequest(millis=30000), timeout=20) for _ in range(100)]
        time.sleep(0.3)
        assert not any(f.done() for f in futs), [f.exception() for f in futs if f.done()][:3]
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        try:
            rc = s.wait(timeout=grace + 2)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {grace + 2}s after SIGTERM with --grace-period 1:\n"
                        f"{s.stderr_tail()}")
        took = time.monotonic() - t0
        assert rc == 0, s.stderr_tail()
        assert took >= grace * 0.9, f"exited {took:.2f}s after SIGTERM: the grace period was not given"
        codes = []
        for f in futs:
            e = f.exception(timeout=30)
            assert e is not None, "a 30 s Sleep completed OK during shutdown"
            codes.append(e.code())
        bad = [c for c in codes if c not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)]
        assert not bad, f"clients got {set(bad)}"
        s.check_sanitizers()
    finally:
        ch.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_idle_shutdown_is_clean_and_fast(larder, pb, sig):
    s = larder("registry")
    assert_serving(pb, s)
    t0 = time.monotonic()
    s.send_signal(sig)
    assert s.wait(timeout=5) == 0, s.stderr_tail()
    assert time.monotonic() - t0 < 2
    s.check_sanitizers()


# --------------------------------------------------------------------------
# logging


def _json_lines(text: str):
    objs = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AssertionError(f"stderr line {i + 1} is not JSON ({e}): {line!r}")
        assert isinstance(obj, dict), f"stderr line {i + 1} is not a JSON object: {line!r}"
        objs.append(obj)
    return objs


def _call_lines(objs, method):
    return [o for o in objs if o.get("method") == method]


def _code_matches(o, code: grpc.StatusCode) -> bool:
    vals = [o.get("code"), o.get("status")]
    return any(v == code.value[0] or (isinstance(v, str) and v.upper() == code.name) for v in vals)


def test_json_log_lines(larder, pb):
    s = larder("online", "--log-format", "json", "--log-level", "info")
    with s.channel() as ch:
        serving(pb, ch)
        pb.Debug(ch).Sleep(pb.debug.SleepRequest(millis=20), timeout=T)
        rpc_error(pb.Debug(ch).Sleep, pb.debug.SleepRequest(fail_code=5), timeout=T)
        rpc_error(ch.unary_unary("/larder.nope.Nope/Missing"), b"", timeout=T)
        rpc_error(ch.unary_unary("/larder.debug.Debug/Sleep"), GARBAGE, timeout=T)
        list(pb.Debug(ch).Count(pb.debug.CountRequest(n=3), timeout=T))
    s.stop()
    objs = _json_lines(s.stderr_text())
    for method, code in (("/grpc.health.v1.Health/Check", grpc.StatusCode.OK),
                         ("/larder.debug.Debug/Count", grpc.StatusCode.OK),
                         ("/larder.nope.Nope/Missing", grpc.StatusCode.UNIMPLEMENTED)):
        lines = _call_lines(objs, method)
        assert lines, f"no access-log line for {method} in {objs!r}"
        assert any(_code_matches(o, code) for o in lines), f"{method}: {lines!r}"
    sleeps = _call_lines(objs, "/larder.debug.Debug/Sleep")
    assert len(sleeps) == 3, sleeps
    for code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
        assert any(_code_matches(o, code) for o in sleeps), f"no Sleep line with {code}: {sleeps!r}"
    for o in _call_lines(objs, "/larder.debug.Debug/Sleep") + _call_lines(
            objs, "/grpc.health.v1.Health/Check"):
        assert "127.0.0.1" in str(o.get("peer")), o
        assert "code" in o or "status" in o, o
        lat = o.get("latency_us")
        assert isinstance(lat, (int, float)) and not isinstance(lat, bool) and lat >= 0, o
    ok_sleep = [o for o in sleeps if _code_matches(o, grpc.StatusCode.OK)][0]
    assert ok_sleep["latency_us"] >= 20_000, ok_sleep


def test_json_log_with_tls_handshake_failures(larder, pb, tls):
    """gRPC core's own messages (a failed handshake) are JSON lines too."""
    s = larder("online", "--log-format", "json", tls=tls, mtls=True, debug=False)
    with s.channel(client_cert=False) as ch:
        rpc_error(pb.Health(ch).Check, pb.health.HealthCheckRequest(), timeout=T)
    with grpc.insecure_channel(s.target) as ch:
        rpc_error(pb.Health(ch).Check, pb.health.HealthCheckRequest(), timeout=T)
    assert_serving(pb, s)
    s.stop()
    objs = _json_lines(s.stderr_text())
    assert _call_lines(objs, "/grpc.health.v1.Health/Check")


def test_text_log_has_call_line(larder, pb):
    s = larder("online", "--log-format", "text")
    with s.channel() as ch:
        pb.Debug(ch).Sleep(pb.debug.SleepRequest(millis=1), timeout=T)
    s.stop()
    lines = [ln for ln in s.stderr_text().splitlines() if "/larder.debug.Debug/Sleep" in ln]
    assert len(lines) == 1, s.stderr_text()
    assert "127.0.0.1" in lines[0] and "OK" in lines[0].upper(), lines[0]


def test_no_access_log(larder, pb):
    s = larder("online", "--no-access-log")
    with s.channel() as ch:
        pb.Debug(ch).Sleep(pb.debug.SleepRequest(millis=1), timeout=T)
    s.stop()
    assert "/larder.debug.Debug/Sleep" not in s.stderr_text()


def _pmqos_limit():
    """The kernel's current CPU wake-up latency limit (µs), or None."""
    try:
        with open("/dev/cpu_dma_latency", "rb") as f:
            return struct.unpack("i", f.read(4))[0]
    except OSError:
        return None


def test_cpu_dma_latency_held_while_serving(larder, pb):
    before = _pmqos_limit()
    s = larder("online", "--cpu-dma-latency", "7")
    with s.channel() as ch:
        assert_serving(pb, s)
        pb.Debug(ch).Sleep(pb.debug.SleepRequest(millis=1), timeout=T)
    if before is None or not os.access("/dev/cpu_dma_latency", os.W_OK):
        # not permitted here: the server serves anyway and says why
        s.stop()
        assert "cpu_dma_latency_us: cannot" in s.stderr_text(), s.stderr_text()
        return
    assert _pmqos_limit() == min(before, 7)
    s.stop()
    assert "latency limit of 7 us" in s.stderr_text(), s.stderr_text()
    # the request ends with the process
    assert _pmqos_limit() == before


def test_cpu_dma_latency_out_of_range_is_usage_error(tmp_path):
    p = subprocess.run([fixture.binary("online"), "--cpu-dma-latency", "-5", "--print-config"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert p.returncode == 2, p
    assert "cpu_dma_latency_us" in p.stderr, p.stderr


# --------------------------------------------------------------------------
# config and CLI


def valid_yaml(dir) -> str:
    return (f"project: larder_test\n"
            f"provider: local\n"
            f"registry:\n"
            f"  registry_type: file\n"
            f"  path: {dir}/registry.db\n"
            f"  cache_ttl_seconds: 60\n"
            f"online_store:\n"
            f"  type: sqlite\n"
            f"  path: {dir}/online.db\n"
            f"entity_key_serialization_version: 3\n")


@pytest.mark.parametrize("kind", KINDS)
def test_config_valid(larder, pb, kind, tmp_path):
    s = larder(kind, config=valid_yaml(tmp_path), debug=False)
    assert_serving(pb, s)


@pytest.mark.parametrize("kind", KINDS)
def test_config_wrong_type_exits_1(kind, tmp_path):
    cfg = tmp_path / "feature_store.yaml"
    cfg.write_text("project: larder_test\nregistry:\n  cache_ttl_seconds: abc\n  path: x\n"
                   "provider: local\nonline_store:\n  type: sqlite\n"
                   f"  path: {tmp_path}/online.db\n")
    rc, out, err = fixture.run_to_exit(kind, ["-c", str(cfg), "--port", str(fixture.free_port())])
    assert rc == 1, f"exit {rc}\n{err}"
    assert "cache_ttl_seconds" in err, err


@pytest.mark.parametrize("kind", KINDS)
def test_config_unknown_key_warns(larder, pb, kind, tmp_path):
    s = larder(kind, config=valid_yaml(tmp_path) + "no_such_setting_xyz: 1\n", debug=False)
    assert_serving(pb, s)
    assert "no_such_setting_xyz" in s.stderr_text(), s.stderr_text()


@pytest.mark.parametrize("kind", KINDS)
def test_config_missing_file_exits_1(kind, tmp_path):
    missing = tmp_path / "nowhere" / "feature_store.yaml"
    rc, out, err = fixture.run_to_exit(kind, ["-c", str(missing), "--port", str(fixture.free_port())])
    assert rc == 1, f"exit {rc}\n{err}"
    assert str(missing) in err, err


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args", [["--no-such-flag"], ["--port"], ["--workers"],
                                  ["stray-positional-argument"]])
def test_usage_error_exits_2(kind, args):
    rc, out, err = fixture.run_to_exit(kind, args)
    assert rc == 2, f"{args}: exit {rc}\n{out}\n{err}"
    assert err.strip(), f"{args}: no message on stderr"


@pytest.mark.parametrize("kind", KINDS)
def test_help_and_version(kind):
    rc, out, err = fixture.run_to_exit(kind, ["--help"])
    assert rc == 0, err
    for flag in ("--config", "--port", "--tls-cert", "--grace-period", "--debug-service"):
        assert flag in out + err, f"--help does not mention {flag}"
    rc, out, err = fixture.run_to_exit(kind, ["--version"])
    assert rc == 0, err
    assert (out + err).strip()


def test_port_in_use_exits_1(larder, pb):
    s = larder("online", debug=False)
    rc, out, err = fixture.run_to_exit("online", ["--port", str(s.port)])
    assert rc == 1, f"second server on the same port: exit {rc}\n{err}"
    assert str(s.port) in err, err
    assert_serving(pb, s)


# --------------------------------------------------------------------------
# the fixture's real backends


def test_fixture_redis(redis_server):
    def cli(*args):
        r = subprocess.run(["redis-cli", "-h", redis_server.host, "-p", str(redis_server.port),
                            *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert cli("PING") == "PONG"
    key = f"larder-fixture-test-{time.time_ns()}"
    assert cli("HSET", key, "f", "v") == "1"
    assert cli("HGET", key, "f") == "v"
    cli("DEL", key)


def test_fixture_postgres(postgres):
    r = subprocess.run(["psql", "-X", "-At", "-d", postgres.dsn, "-c", "SELECT 1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    r = subprocess.run(["psql", "-X", "-At", "-d", postgres.dsn, "-c", "SELECT current_database()"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "larder_test"
