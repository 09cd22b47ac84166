"""Test fixture for larder's integration tests: real backends, real binaries.

Everything here starts real processes on free loopback ports and tears them
down again, even when a test fails or the run is interrupted:

  * Redis       -- `redis-server` in a temp dir (no persistence unless asked)
  * PostgreSQL  -- `initdb` + `postgres` as the `postgres` user in a temp dir,
                   with a database `larder_test`
  * LarderServer -- one of our three binaries (registry, online, offline),
                   ready once grpc.health.v1.Health/Check answers SERVING

Each process's stderr goes to a file. Teardown of our binaries sends SIGTERM,
waits, checks the exit code and scans stderr for sanitizer reports; a report
is an error (SanitizerReport).

The runner (tests/run.py) starts one Redis and one PostgreSQL for the whole
run and exports them as LARDER_TEST_REDIS=host:port and LARDER_TEST_PG_DSN;
pytest's session fixtures reuse them and only start their own when those are
not set. Binaries are found under LARDER_BUILD_DIR (default <repo>/build).

Only the standard library and grpcio are needed (grpcio only for the
readiness check of our binaries).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"

KINDS = ("registry", "online", "offline")
_BINARIES = {
    "registry": ("registry_server", "larder-registry"),
    "online": ("online_server", "larder-online"),
    "offline": ("offline_server", "larder-offline"),
}

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
)

# Starting under ASan on 2 shared cores is slow; allow for it.
START_TIMEOUT = float(os.environ.get("LARDER_TEST_START_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("LARDER_TEST_STOP_TIMEOUT", "20"))


class FixtureError(RuntimeError):
    """A backend or binary could not be started or stopped."""


class SanitizerReport(AssertionError):
    """A sanitizer (ASan/LSan/UBSan) reported a problem in a process's stderr."""


# --------------------------------------------------------------------------
# process bookkeeping


def _die_with_parent(argv: Sequence[str]) -> List[str]:
    """argv run through `setpriv --pdeathsig KILL`, so the child gets SIGKILL
    if the process that started it dies and a killed test run leaves no
    servers behind. (Not a preexec_fn: that makes subprocess fork(), and
    grpcio's fork handlers can deadlock a process with live channels.)"""
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--"] + [str(a) for a in argv]
    return [str(a) for a in argv]


_SETPRIV = shutil.which("setpriv")


_live_lock = threading.Lock()
_live: Dict[int, "_Managed"] = {}


class _Managed:
    """Something we started and must stop: registered until stopped."""

    def _register(self) -> None:
        with _live_lock:
            _live[id(self)] = self

    def _unregister(self) -> None:
        with _live_lock:
            _live.pop(id(self), None)

    def kill(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def stop_all() -> None:
    """Stop everything this process started and has not stopped yet. Called
    at exit and by the runner's signal handler; never raises."""
    with _live_lock:
        items = list(_live.values())
    for m in reversed(items):
        try:
            m.kill()
        except Exception as e:  # pragma: no cover
            print(f"fixture: cleanup of {m!r} failed: {e}", file=sys.stderr)


atexit.register(stop_all)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Optional[Path], lines: int = 40) -> str:
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen, sig: int, timeout: float) -> Optional[int]:
    """Send sig, wait up to timeout; SIGKILL if still alive. Returns the exit
    code of a process that exited by itself, else None."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def _mkdtemp(prefix: str) -> Path:
    base = os.environ.get("LARDER_TEST_TMPDIR") or None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def scan_sanitizer(text: str) -> List[str]:
    """Lines of text that look like sanitizer reports."""
    return [ln for ln in text.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]


# --------------------------------------------------------------------------
# Redis


class Redis(_Managed):
    """A real redis-server on a free loopback port.

    with Redis() as r: r.host, r.port, r.addr ("127.0.0.1:PORT")
    """

    def __init__(self, persistence: bool = False, binary: str = "redis-server"):
        self.persistence = persistence
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Optional[Path] = None
        self.log: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "Redis":
        exe = shutil.which(self.binary)
        if not exe:
            raise FixtureError("redis-server not found on PATH (apt-get install redis-server)")
        self.dir = _mkdtemp("larder-redis-")
        self.log = self.dir / "redis.log"
        self.port = free_port()
        args = [exe, "--port", str(self.port), "--bind", self.host, "--dir", str(self.dir),
                "--daemonize", "no", "--protected-mode", "no", "--logfile", ""]
        if self.persistence:
            args += ["--appendonly", "yes", "--save", "60 1"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(_die_with_parent(args), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        self._register()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = _tail(self.log)
                self.kill()
                raise FixtureError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            if self.ping():
                return self
            if time.monotonic() > deadline:
                log = _tail(self.log)
                self.kill()
                raise FixtureError(f"redis-server not ready on {self.addr} after {timeout}s:\n{log}")
            time.sleep(0.05)

    def command(self, *args: str, timeout: float = 5.0) -> bytes:
        """Send one command in RESP, return the raw reply (first read)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING", timeout=1.0).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def stop(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, signal.SIGTERM, 10.0)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._unregister()

    def __enter__(self) -> "Redis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Redis({self.addr})"


# --------------------------------------------------------------------------
# PostgreSQL


def _pg_bindir() -> Path:
    env = os.environ.get("LARDER_PG_BINDIR")
    if env:
        return Path(env)
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for c in reversed(cands):
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise FixtureError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                       "(apt-get install postgresql)")


class Postgres(_Managed):
    """A real PostgreSQL cluster in a temp dir, run as the `postgres` user,
    listening on a free loopback port, with a database `larder_test`.

    with Postgres() as pg: pg.dsn  ("postgresql://postgres@127.0.0.1:PORT/larder_test")
    """

    DBNAME = "larder_test"
    USER = "postgres"

    def __init__(self, os_user: str = "postgres"):
        self.os_user = os_user
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Optional[Path] = None
        self.log: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None
        self.bindir: Optional[Path] = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.USER}@{self.host}:{self.port}/{self.DBNAME}"

    def _as_user(self, argv: Sequence[str]) -> List[str]:
        if os.geteuid() != 0:
            return _die_with_parent(argv)  # not root: run as ourselves
        return ["setpriv", f"--reuid={self.os_user}", f"--regid={self.os_user}", "--init-groups",
                "--pdeathsig", "KILL", "--"] + list(argv)

    def start(self, timeout: float = 60.0) -> "Postgres":
        self.bindir = _pg_bindir()
        self.dir = _mkdtemp("larder-pg-")
        data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(self.os_user)
            except KeyError:
                raise FixtureError(f"user {self.os_user!r} does not exist (apt-get install postgresql)")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        self._register()
        init = subprocess.run(
            self._as_user([str(self.bindir / "initdb"), "-D", str(data), "-U", self.USER,
                           "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=120)
        if init.returncode != 0:
            out = init.stdout.decode(errors="replace")
            self.kill()
            raise FixtureError(f"initdb failed ({init.returncode}):\n{out[-3000:]}")
        self.port = free_port()
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                self._as_user([str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                               "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                               "-c", "fsync=off", "-c", "synchronous_commit=off",
                               "-c", "full_page_writes=off", "-c", "logging_collector=off",
                               "-c", "max_connections=100"]),
                cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = _tail(self.log)
                self.kill()
                raise FixtureError(f"postgres exited with {self.proc.returncode}:\n{log}")
            r = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", self.host,
                                "-p", str(self.port), "-U", self.USER],
                               stdin=subprocess.DEVNULL, capture_output=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                log = _tail(self.log)
                self.kill()
                raise FixtureError(f"postgres not ready on {self.host}:{self.port} after {timeout}s:\n{log}")
            time.sleep(0.1)
        self.psql(f"CREATE DATABASE {self.DBNAME}", db="postgres")
        return self

    def psql(self, sql: str, db: Optional[str] = None, timeout: float = 30.0) -> str:
        """Run sql with psql (unaligned, tuples only); return stdout."""
        dsn = f"postgresql://{self.USER}@{self.host}:{self.port}/{db or self.DBNAME}"
        r = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", dsn, "-c", sql],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise FixtureError(f"psql {sql!r} failed ({r.returncode}): "
                               f"{r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    def stop(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            # SIGINT = "fast" shutdown: disconnect clients, checkpoint, exit.
            _terminate(self.proc, signal.SIGINT, 20.0)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._unregister()

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Postgres({self.host}:{self.port})"


# --------------------------------------------------------------------------
# TLS material (openssl CLI)


class TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost, a client
    certificate signed by the CA, and a second (untrusted) CA with its own
    client certificate. All PEM files in `dir`."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.ca = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.server_cert = self.dir / "server.pem"
        self.server_key = self.dir / "server.key"
        self.client_cert = self.dir / "client.pem"
        self.client_key = self.dir / "client.key"
        self.rogue_ca = self.dir / "rogue-ca.pem"
        self.rogue_cert = self.dir / "rogue-client.pem"
        self.rogue_key = self.dir / "rogue-client.key"

    def read(self, name: str) -> bytes:
        return Path(getattr(self, name)).read_bytes()


def _openssl(args: Sequence[str], cwd: Path) -> None:
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise FixtureError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")


def make_tls(dir: Path) -> TlsFiles:
    """Create CA, server and client certificates with the openssl CLI."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    t = TlsFiles(dir)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (dir / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (dir / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    for ca, ca_key, cn in ((t.ca, t.ca_key, "larder test CA"),
                           (t.rogue_ca, dir / "rogue-ca.key", "rogue test CA")):
        _openssl(["req", "-x509", *key, "-keyout", str(ca_key), "-out", str(ca), "-days", "3",
                  "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir)

    def leaf(cert: Path, keyf: Path, cn: str, ext: str, ca: Path, ca_key: Path) -> None:
        csr = dir / (cert.stem + ".csr")
        _openssl(["req", *key, "-keyout", str(keyf), "-out", str(csr), "-subj", f"/CN={cn}"], dir)
        _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                  "-CAcreateserial", "-out", str(cert), "-days", "3", "-extfile", ext], dir)

    leaf(t.server_cert, t.server_key, "localhost", "server.ext", t.ca, t.ca_key)
    leaf(t.client_cert, t.client_key, "larder test client", "client.ext", t.ca, t.ca_key)
    leaf(t.rogue_cert, t.rogue_key, "rogue client", "client.ext", t.rogue_ca, dir / "rogue-ca.key")
    return t


# --------------------------------------------------------------------------
# our binaries


def isolation_args(kind: str, args: Sequence[str]) -> List[str]:
    """Flags that keep a test binary off fixed ports: larder-online also
    serves Feast's HTTP API, on 6566 by default; tests ask for a free port
    (--http-port 0) unless the arguments choose one."""
    if kind == "online" and not any(a == "--http-port" or a.startswith("--http-port=")
                                    for a in args):
        return ["--http-port", "0"]
    return []


def build_dir() -> Path:
    return Path(os.environ.get("LARDER_BUILD_DIR") or (REPO / "build")).resolve()


def binary(kind: str) -> Path:
    if kind not in _BINARIES:
        raise ValueError(f"unknown server kind {kind!r} (one of {', '.join(KINDS)})")
    sub, name = _BINARIES[kind]
    return build_dir() / sub / name


# grpc.health.v1.HealthCheckRequest{service=""} is the empty message, and
# HealthCheckResponse{status=SERVING} is field 1 varint 1: 08 01. The
# readiness probe speaks raw bytes so it does not need generated stubs.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"


class ServerError(FixtureError):
    pass


class LarderServer(_Managed):
    """One of our binaries, started on a free loopback port.

        s = LarderServer("online", args=["--debug-service"]).start()
        with s.channel() as ch: ...
        rc = s.stop()            # SIGTERM, wait, exit code 0, no sanitizer report

    config: YAML text written to a temp feature_store.yaml and passed with -c.
    tls: TlsFiles to serve TLS with (server cert/key); mtls additionally
    passes --tls-client-ca so client certificates are required.
    """

    def __init__(self, kind: str, args: Iterable[str] = (), config: Optional[str] = None,
                 tls: Optional[TlsFiles] = None, mtls: bool = False,
                 env: Optional[Dict[str, str]] = None, port: Optional[int] = None,
                 name: Optional[str] = None):
        self.kind = kind
        self.exe = binary(kind)
        self.extra_args = list(args)
        self.config_text = config
        self.tls = tls
        self.mtls = mtls
        self.env = env
        self.host = "127.0.0.1"
        self.port = port or 0
        self.name = name or kind
        self.dir: Optional[Path] = None
        self.config_path: Optional[Path] = None
        self.stderr_path: Optional[Path] = None
        self.stdout_path: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self._checked = False

    # ---- lifecycle

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> List[str]:
        a = [str(self.exe), "--host", self.host, "--port", str(self.port)]
        if self.config_path is not None:
            a += ["-c", str(self.config_path)]
        if self.tls is not None:
            a += ["--tls-cert", str(self.tls.server_cert), "--tls-key", str(self.tls.server_key)]
            if self.mtls:
                a += ["--tls-client-ca", str(self.tls.ca)]
        return a + isolation_args(self.kind, self.extra_args) + self.extra_args

    def spawn(self) -> "LarderServer":
        """Start the process without waiting for readiness."""
        if not self.exe.exists():
            raise ServerError(f"{self.exe} does not exist: build first "
                              f"(meson setup {build_dir()} && ninja -C {build_dir()}), "
                              f"or set LARDER_BUILD_DIR")
        self.dir = _mkdtemp(f"larder-{self.name}-")
        if self.config_text is not None:
            self.config_path = self.dir / "feature_store.yaml"
            self.config_path.write_text(self.config_text)
        if not self.port:
            self.port = free_port()
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(_die_with_parent(self.argv()), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, cwd=self.dir, env=env,
                                         start_new_session=True)
        self._register()
        return self

    def start(self, timeout: float = START_TIMEOUT) -> "LarderServer":
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll Health/Check until SERVING. Raises ServerError with the stderr
        tail if the process dies or is not ready within timeout."""
        import grpc

        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} ({' '.join(self.argv())}) exited with "
                                  f"{self.proc.returncode} before it was ready:\n{self.stderr_tail()}")
            try:
                with self.channel() as ch:
                    call = ch.unary_unary(_HEALTH_CHECK)
                    resp = call(b"", timeout=1.0)
                if resp == _SERVING:
                    return
                last = f"health answered {resp!r}"
            except grpc.RpcError as e:
                last = f"{e.code()}: {e.details()}"
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not SERVING on {self.target} after {timeout}s "
                                  f"(last: {last}):\n{self.stderr_tail()}")
            time.sleep(0.05)

    def channel(self, options: Sequence = (), client_cert: bool = True):
        """A grpc.Channel to this server (TLS if the server serves TLS; with
        the client certificate when client_cert and the server is mTLS)."""
        import grpc

        if self.tls is None:
            return grpc.insecure_channel(self.target, options=list(options))
        kw = {"root_certificates": self.tls.read("ca")}
        if self.mtls and client_cert:
            kw["private_key"] = self.tls.read("client_key")
            kw["certificate_chain"] = self.tls.read("client_cert")
        return grpc.secure_channel(self.target, grpc.ssl_channel_credentials(**kw),
                                   options=list(options))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for exit (raises subprocess.TimeoutExpired)."""
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def stop(self, expect_exit: Optional[int] = 0, timeout: float = STOP_TIMEOUT,
             sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or sig), wait up to timeout, then check: exit code equals
        expect_exit (None: any) and no sanitizer report in stderr. A process
        that does not exit in time is killed and the stop fails."""
        if self.proc is None:
            raise ServerError(f"{self.name} was never started")
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise ServerError(f"{self.name} did not exit within {timeout}s of "
                                  f"{signal.Signals(sig).name}; killed:\n{self.stderr_tail()}")
            self.returncode = rc
            self.check_sanitizers()
            if expect_exit is not None and rc != expect_exit:
                raise ServerError(f"{self.name} exited with {rc}, expected {expect_exit}:\n"
                                  f"{self.stderr_tail()}")
            return rc
        finally:
            self._unregister()

    def kill(self) -> None:
        """Last-resort cleanup (no checks)."""
        if self.proc is not None and self.proc.poll() is None:
            _terminate(self.proc, signal.SIGTERM, 5.0)
        self._unregister()

    def cleanup_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # ---- output

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 40) -> str:
        return _tail(self.stderr_path, lines)

    def check_sanitizers(self) -> None:
        if self._checked:
            return
        self._checked = True
        hits = scan_sanitizer(self.stderr_text())
        if hits:
            raise SanitizerReport(f"{self.name}: sanitizer report in stderr:\n" + "\n".join(hits[:10])
                                  + "\n---- stderr tail ----\n" + self.stderr_tail(80))

    def __enter__(self) -> "LarderServer":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, et, ev, tb) -> None:
        if self.alive():
            if et is None:
                self.stop()
            else:
                self.kill()
        self.cleanup_dir()

    def __repr__(self) -> str:
        return f"LarderServer({self.name}@{self.target})"


def stop_servers(servers: Sequence[Optional["LarderServer"]]) -> List[str]:
    """Stop every server that was started (exit code 0 required; a server that
    already died is checked for sanitizer reports), always kill and clean up,
    and return the error texts instead of raising, so every one is stopped."""
    errors = []
    for s in servers:
        if s is None:
            continue
        if s.proc is None:  # never spawned: only its directory to remove
            s.cleanup_dir()
            continue
        try:
            if s.alive():
                s.stop(expect_exit=0)
            else:
                s.check_sanitizers()
        except (FixtureError, AssertionError) as e:
            errors.append(str(e))
        finally:
            s.kill()
            s.cleanup_dir()
    return errors


def run_to_exit(kind: str, args: Sequence[str], timeout: float = 30.0,
                env: Optional[Dict[str, str]] = None, isolate: bool = True):
    """Run a binary that is expected to exit by itself (usage or config
    errors) in an empty temp dir (so no ./feature_store.yaml is picked up).
    With isolate, fixed default ports are replaced (isolation_args). Returns
    (returncode, stdout, stderr). A run that does not exit within timeout is
    killed and raises ServerError. Sanitizer reports in stderr raise
    SanitizerReport."""
    exe = binary(kind)
    if not exe.exists():
        raise ServerError(f"{exe} does not exist: build first or set LARDER_BUILD_DIR")
    e = dict(os.environ)
    if env:
        e.update(env)
    args = (isolation_args(kind, args) if isolate else []) + list(args)
    cwd = _mkdtemp(f"larder-{kind}-run-")
    try:
        proc = subprocess.Popen(_die_with_parent([str(exe)] + args), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=cwd,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise ServerError(f"{exe.name} {' '.join(args)} did not exit within {timeout}s:\n"
                              f"{err.decode(errors='replace')[-3000:]}")
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    so, se = out.decode(errors="replace"), err.decode(errors="replace")
    hits = scan_sanitizer(se)
    if hits:
        raise SanitizerReport(f"{exe.name} {' '.join(args)}: sanitizer report:\n" + "\n".join(hits[:10])
                              + "\n---- stderr ----\n" + se[-5000:])
    return proc.returncode, so, se


# --------------------------------------------------------------------------
# Python stubs, generated at test time


PROTO_FILES = (
    "grpc/health/v1/health.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "larder/debug/debug.proto",
)


def generate_stubs(out_dir: Path, protos: Sequence[str] = PROTO_FILES) -> Path:
    """protoc --python_out/--grpc_python_out for protos (relative to
    <repo>/protos) into out_dir, and put out_dir first on sys.path. The
    well-known types come from /usr/include and the installed protobuf."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    cmd = ["protoc", f"-I{PROTOS}", "-I/usr/include", f"--python_out={out_dir}",
           f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
           *protos]
    r = subprocess.run(cmd, cwd=PROTOS, capture_output=True)
    if r.returncode != 0:
        raise FixtureError(f"protoc failed ({r.returncode}): {' '.join(cmd)}\n"
                           f"{r.stderr.decode(errors='replace')}")
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    return out_dir


def load_module(path: Path, name: str):
    """Import a generated module by file path under a chosen name (for
    grpc/health/v1/health_pb2.py, whose package path clashes with grpcio's
    own `grpc` package)."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------
# backends from the environment, or started here


def parse_hostport(s: str):
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1"), int(port)


def install_signal_cleanup() -> None:
    """SIGTERM/SIGINT/SIGHUP: stop everything we started, then exit 128+sig.
    For the runner and for scripts; pytest handles its own Ctrl-C."""

    def handler(signum, frame):
        stop_all()
        os._exit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, handler)
