"""pytest fixtures for larder's integration tests, on top of tests/fixture.py.

Session scope: generated Python stubs (`pb`), Redis (`redis_server`),
PostgreSQL (`postgres`), TLS material (`tls`). Redis/PostgreSQL come from
LARDER_TEST_REDIS / LARDER_TEST_PG_DSN when the runner set them, otherwise
they are started here for the session.

Function scope: `larder` -- a factory that starts our binaries with chosen
flags; every server still running at the end of the test is stopped with
SIGTERM and must exit 0 with no sanitizer report in its stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import types
from pathlib import Path

# grpcio's fork handlers can deadlock pytest when it starts server processes
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fixture  # noqa: E402


# --------------------------------------------------------------------------
# a per-test time limit (no pytest-timeout on Debian's python3-pytest)

TEST_TIMEOUT = float(os.environ.get("LARDER_TEST_TIMEOUT", "120"))


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Fail a test body that runs longer than LARDER_TEST_TIMEOUT seconds
    (SIGALRM in the main thread), so one hang cannot stall the whole run.
    Fixture teardown (server stop, with its own limits) still runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TestTimeout(f"{item.nodeid} still running after {TEST_TIMEOUT:.0f}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# stubs


class HealthStub:
    """grpc.health.v1.Health client built from the generated messages (the
    generated *_pb2_grpc module cannot be imported under its real package
    name, `grpc`, which is grpcio itself)."""

    def __init__(self, channel: grpc.Channel, pb):
        self.Check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=pb.HealthCheckRequest.SerializeToString,
            response_deserializer=pb.HealthCheckResponse.FromString)
        self.Watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=pb.HealthCheckRequest.SerializeToString,
            response_deserializer=pb.HealthCheckResponse.FromString)


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Generated messages and stubs: pb.health, pb.debug, pb.debug_grpc,
    pb.status, pb.error_details; pb.Health(channel), pb.Debug(channel)."""
    out = fixture.generate_stubs(tmp_path_factory.mktemp("pb"))
    health = fixture.load_module(out / "grpc/health/v1/health_pb2.py", "larder_test_health_pb2")
    from larder.debug import debug_pb2, debug_pb2_grpc
    from google.rpc import error_details_pb2, status_pb2

    ns = types.SimpleNamespace(health=health, debug=debug_pb2, debug_grpc=debug_pb2_grpc,
                               status=status_pb2, error_details=error_details_pb2)
    ns.Health = lambda ch: HealthStub(ch, health)
    ns.Debug = debug_pb2_grpc.DebugStub
    ns.SERVING = health.HealthCheckResponse.SERVING
    ns.SERVICE_UNKNOWN = health.HealthCheckResponse.SERVICE_UNKNOWN
    return ns


# --------------------------------------------------------------------------
# backends


class _External:
    """A backend the runner started: addresses only, nothing to stop."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


@pytest.fixture(scope="session")
def redis_server():
    """An object with .host, .port, .addr of a running Redis."""
    env = os.environ.get("LARDER_TEST_REDIS")
    if env:
        host, port = fixture.parse_hostport(env)
        yield _External(host=host, port=port, addr=f"{host}:{port}")
        return
    with fixture.Redis() as r:
        yield r


@pytest.fixture(scope="session")
def postgres():
    """An object with .dsn of a running PostgreSQL with database larder_test."""
    env = os.environ.get("LARDER_TEST_PG_DSN")
    if env:
        yield _External(dsn=env)
        return
    with fixture.Postgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """fixture.TlsFiles: CA, server cert (127.0.0.1/localhost), client cert,
    and an untrusted CA with its own client cert."""
    return fixture.make_tls(tmp_path_factory.mktemp("tls"))


# --------------------------------------------------------------------------
# our binaries


@pytest.fixture
def larder():
    """Factory: larder(kind, *flags, config=None, tls=None, mtls=False,
    debug=True, wait=True) -> fixture.LarderServer (started; ready unless
    wait=False). Teardown stops every server still running (exit 0 required)
    and checks each server's stderr for sanitizer reports."""
    started = []

    def start(kind, *flags, config=None, tls=None, mtls=False, debug=True, wait=True, **kw):
        args = list(flags)
        if debug and "--debug-service" not in args:
            args.append("--debug-service")
        s = fixture.LarderServer(kind, args=args, config=config, tls=tls, mtls=mtls, **kw)
        started.append(s)
        if wait:
            s.start()
        else:
            s.spawn()
        return s

    yield start

    errors = fixture.stop_servers(started)
    if errors:
        pytest.fail("server teardown:\n" + "\n\n".join(errors), pytrace=False)
