"""Helpers shared by the materialization tests (test_materialize.py,
test_e2e_topology.py): the `larder` binary, ISO times, polling, the offline
server's announcement in the registry, and Redis dumps (pipelined, binary
safe) to compare online states key by key and byte by byte.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Dict, List, Optional

import fixture
from online_helpers import Resp
from registry_helpers import client as registry_client

SEC = 1_000_000


def iso(us: int) -> str:
    """RFC 3339 UTC with microseconds."""
    dt = datetime.datetime.fromtimestamp(us / SEC, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def larder_bin() -> Path:
    return fixture.build_dir() / "cli" / "larder"


def wait_for(pred, timeout: float = 30, what: str = "condition", every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def offline_endpoint(registry: fixture.LarderServer, rpb, project: str) -> Optional[str]:
    """The target larder-offline announced for project in the registry's
    infra (larder.OfflineServerEndpoint), or None."""
    c = registry_client(registry, rpb)
    infra = c.GetInfra(rpb.rs.GetInfraRequest(project=project, allow_cache=False))
    for o in infra.infra_objects:
        if o.infra_object_class_type == "larder.OfflineServerEndpoint":
            kv = dict(line.split("=", 1) for line in o.custom_infra.field.decode().splitlines()
                      if "=" in line)
            if kv.get("project") == project:
                return kv.get("target")
    return None


# --------------------------------------------------------------------------
# Redis


def redis_pipeline(r: Resp, commands: List[tuple]) -> list:
    """Send every command, then read every reply (one round trip per call)."""
    parts = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    r.sock.sendall(b"".join(parts))
    return [r._reply() for _ in commands]


def redis_keys(r: Resp, match: bytes = b"*") -> List[bytes]:
    keys: List[bytes] = []
    cursor = b"0"
    while True:
        cursor, batch = r.command("SCAN", cursor, "MATCH", match, "COUNT", "5000")
        keys += batch
        if cursor == b"0":
            return keys


def redis_dump(host: str, port: int, match: bytes = b"*", db: int = 0,
               chunk: int = 2000) -> Dict[bytes, Dict[bytes, bytes]]:
    """Every hash whose key matches: key -> {field: value}. A key of another
    type is an error (the online store writes hashes only)."""
    out: Dict[bytes, Dict[bytes, bytes]] = {}
    with Resp(host, port, timeout=60) as r:
        if db:
            r.command("SELECT", str(db))
        keys = redis_keys(r, match)
        for i in range(0, len(keys), chunk):
            part = keys[i:i + chunk]
            for k, flat in zip(part, redis_pipeline(r, [("HGETALL", k) for k in part])):
                assert isinstance(flat, list), (k, flat)
                out[k] = dict(zip(flat[0::2], flat[1::2]))
    return out


def redis_calls(host: str, port: int) -> Dict[str, int]:
    """Redis' call counter per command since start (INFO commandstats)."""
    with Resp(host, port) as r:
        text = r.command("INFO", "commandstats").decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            kv = dict(p.split("=", 1) for p in rest.split(","))
            out[name] = int(kv["calls"])
    return out


def redis_delete(host: str, port: int, keys: List[bytes], db: int = 0) -> None:
    with Resp(host, port, timeout=60) as r:
        if db:
            r.command("SELECT", str(db))
        for i in range(0, len(keys), 500):
            r.command("DEL", *keys[i:i + 500])


# --------------------------------------------------------------------------
# Arrow Flight: a pass-through proxy in front of larder-offline


FLIGHT = "/arrow.flight.protocol.FlightService/"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class FlightProxy:
    """A grpcio server forwarding DoPut, GetFlightInfo and DoGet (raw bytes)
    to an upstream Flight server. With first_meta, the first FlightData of
    every DoGet stream gets app_metadata = first_meta (appended as field 3:
    the last occurrence of a field wins, so it replaces what upstream sent)."""

    def __init__(self, upstream: str, first_meta: Optional[bytes] = None):
        import concurrent.futures

        import grpc

        self.first_meta = first_meta
        self.doget_calls = 0
        self.up = grpc.insecure_channel(upstream)
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler("arrow.flight.protocol.FlightService", {
            "DoPut": grpc.stream_stream_rpc_method_handler(self._put),
            "GetFlightInfo": grpc.unary_unary_rpc_method_handler(self._info),
            "DoGet": grpc.unary_stream_rpc_method_handler(self._get),
        })
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self.server.start()

    def _put(self, requests, ctx):
        yield from self.up.stream_stream(FLIGHT + "DoPut")(requests)

    def _info(self, request, ctx):
        return self.up.unary_unary(FLIGHT + "GetFlightInfo")(request)

    def _get(self, request, ctx):
        self.doget_calls += 1
        first = True
        for msg in self.up.unary_stream(FLIGHT + "DoGet")(request):
            if first and self.first_meta is not None:
                msg = msg + b"\x1a" + _varint(len(self.first_meta)) + self.first_meta
            first = False
            yield msg

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.up.close()


def announce_offline(registry: fixture.LarderServer, rpb, project: str, target: str) -> None:
    """Write (or replace) the project's larder.OfflineServerEndpoint in the
    registry's infra, as larder-offline's announcement does."""
    c = registry_client(registry, rpb)
    infra = c.GetInfra(rpb.rs.GetInfraRequest(project=project, allow_cache=False))
    keep = [o for o in infra.infra_objects
            if o.infra_object_class_type != "larder.OfflineServerEndpoint"]
    del infra.infra_objects[:]
    infra.infra_objects.extend(keep)
    o = infra.infra_objects.add()
    o.infra_object_class_type = "larder.OfflineServerEndpoint"
    o.custom_infra.field = f"project={project}\ntarget={target}\ntls=0\n".encode()
    c.UpdateInfra(rpb.rs.UpdateInfraRequest(infra=infra, project=project, commit=True))
