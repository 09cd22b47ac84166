"""Round-trip every top-level message of protos/ through protobuf-c.

Python's protobuf (an implementation nobody here wrote) builds populated
messages, serializes them, and sends them all through one run of
tests/tools/ld_pbrt, which unpacks each with protobuf-c, re-packs it and
sends it back. Python parses the answer and it must equal the original.

The message list comes from the descriptors of protos/ compiled at test time,
so a message that is skipped, or missing from the C catalog, fails the test.
Every branch of every oneof reached must be exercised at least once.

The tool is $LARDER_BUILD_DIR/tests/tools/ld_pbrt (default <repo>/build).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor as gpd
from google.protobuf.message import DecodeError

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
BUILD = Path(os.environ.get("LARDER_BUILD_DIR") or (REPO / "build"))
TOOL = BUILD / "tests" / "tools" / "ld_pbrt"

MAX_DEPTH = 4   # messages nested deeper than this are left unset
MIN_SEEDS = 3   # populated instances per message type (more for wide oneofs)

ST_OK, ST_UNPACK_FAILED, ST_UNKNOWN_TYPE = 0, 1, 2

FD = gpd.FieldDescriptor

# Zero values are included on purpose: inside a oneof (Value.bool_val = false,
# Value.int64_val = 0, ...) they are present and must survive the trip.
# Strings are valid UTF-8 without NUL: protobuf-c keeps strings as C strings.
STRINGS = ["", "a", "feast", "héllo wörld", "日本語のテキスト", "emoji 🍣🥢", "tab\tnew\nline",
           "x" * 300, "driver_hourly_stats:conv_rate", "ÿ\u0100\u07ff\u0800\uffff"]
INT32S = [0, 1, -1, 127, 128, -129, 2**31 - 1, -2**31, 300, -300000]
INT64S = [0, 1, -1, 2**63 - 1, -2**63, 2**32, -2**40, 1_700_000_000_123]
UINT32S = [0, 1, 127, 128, 2**32 - 1, 2**31]
UINT64S = [0, 1, 2**64 - 1, 2**63, 2**32 + 5]
DOUBLES = [0.0, 1.5, -2.25, 1e300, -1e-300, 5e-324, float("inf"), float("-inf"), 3.141592653589793]
FLOATS = [0.0, 1.5, -2.25, 3.4e38, -1.0e-38, 1e-45, float("inf"), 0.1]


# --------------------------------------------------------------------------
# generated Python modules


def _module_name(rel: str) -> str:
    return rel[: -len(".proto")].replace("/", ".") + "_pb2"


def _proto_files():
    return sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """{relative .proto path: generated module} for every .proto in protos/."""
    out = tmp_path_factory.mktemp("pbrt_py")
    files = _proto_files()
    assert files, f"no .proto files under {PROTOS}"
    r = subprocess.run(["protoc", f"-I{PROTOS}", "-I/usr/include", f"--python_out={out}", *files],
                       cwd=PROTOS, capture_output=True, text=True)
    assert r.returncode == 0, f"protoc --python_out failed:\n{r.stderr}"
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    mods = {}
    for rel in files:
        name = _module_name(rel)
        if name.split(".")[0] == "grpc":
            # `grpc` is grpcio's package: load by path under a private name
            # (the same name tests/integration/conftest.py uses).
            alias = "larder_test_" + name.rsplit(".", 1)[-1]
            mod = sys.modules.get(alias)
            if mod is None:
                spec = importlib.util.spec_from_file_location(alias, out / (rel[:-6] + "_pb2.py"))
                mod = importlib.util.module_from_spec(spec)
                sys.modules[alias] = mod
                spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(name)
        assert mod.DESCRIPTOR.name == rel
        mods[rel] = mod
    return mods


@pytest.fixture(scope="module")
def top_level(modules):
    """{full name: message class} for every top-level message in protos/."""
    out = {}
    for rel, mod in modules.items():
        for name, desc in mod.DESCRIPTOR.message_types_by_name.items():
            out[desc.full_name] = getattr(mod, name)
    return out


# --------------------------------------------------------------------------
# populating messages


class Filler:
    """Fills messages deterministically from a seed. Oneof branches are
    picked round-robin per oneof across the whole run, so every branch of a
    oneof is reached once that oneof has been filled often enough."""

    def __init__(self):
        self.next_branch = {}   # oneof full name -> next branch index
        self.seen = set()       # (oneof full name, field name) exercised
        self.reached = {}       # oneof full name -> oneof descriptor

    def scalar(self, f, rng):
        t = f.type
        if t == FD.TYPE_STRING:
            return rng.choice(STRINGS + [rng.choice(STRINGS[1:]) + str(rng.randrange(1000))])
        if t == FD.TYPE_BYTES:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) + b"\x00\xff"[:rng.randrange(3)]
        if t == FD.TYPE_BOOL:
            return rng.choice([True, False])
        if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
            return rng.choice(INT32S + [rng.randint(-2**31, 2**31 - 1)])
        if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
            return rng.choice(INT64S + [rng.randint(-2**63, 2**63 - 1)])
        if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
            return rng.choice(UINT32S + [rng.randint(1, 2**32 - 1)])
        if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
            return rng.choice(UINT64S + [rng.randint(1, 2**64 - 1)])
        if t == FD.TYPE_DOUBLE:
            return rng.choice(DOUBLES + [rng.uniform(-1e9, 1e9)])
        if t == FD.TYPE_FLOAT:
            return rng.choice(FLOATS + [rng.uniform(-1e6, 1e6)])
        if t == FD.TYPE_ENUM:
            values = [v.number for v in f.enum_type.values]
            # proto3 enums are open: an unknown number must survive too.
            return rng.choice(values + [max(values) + 1000])
        raise AssertionError(f"unhandled field type {t} for {f.full_name}")

    def fill(self, msg, rng, depth=0):
        d = msg.DESCRIPTOR
        chosen = {}
        for o in d.oneofs:
            self.reached[o.full_name] = o
            i = self.next_branch.get(o.full_name, rng.randrange(len(o.fields)))
            self.next_branch[o.full_name] = (i + 1) % len(o.fields)
            chosen[o.full_name] = o.fields[i]
        for f in d.fields:
            o = f.containing_oneof
            if o is not None:
                if chosen[o.full_name] is not f:
                    continue
                self.seen.add((o.full_name, f.name))
                self._set_single(msg, f, rng, depth, force=True)
            elif f.label == FD.LABEL_REPEATED:
                if f.message_type is not None and f.message_type.GetOptions().map_entry:
                    self._fill_map(getattr(msg, f.name), f.message_type, rng, depth)
                else:
                    self._fill_repeated(getattr(msg, f.name), f, rng, depth)
            else:
                self._set_single(msg, f, rng, depth, force=False)

    def _set_single(self, msg, f, rng, depth, force):
        if f.type == FD.TYPE_MESSAGE or f.type == FD.TYPE_GROUP:
            sub = getattr(msg, f.name)
            if depth + 1 < MAX_DEPTH:
                self.fill(sub, rng, depth + 1)
                sub.SetInParent()
            elif force:
                sub.SetInParent()   # an empty message still selects the branch
        else:
            setattr(msg, f.name, self.scalar(f, rng))

    def _count(self, rng, depth):
        return rng.randint(0, 3 if depth < 2 else 2)

    def _fill_repeated(self, rep, f, rng, depth):
        n = self._count(rng, depth)
        if f.type == FD.TYPE_MESSAGE:
            if depth + 1 >= MAX_DEPTH:
                return
            for _ in range(n):
                self.fill(rep.add(), rng, depth + 1)
        else:
            rep.extend(self.scalar(f, rng) for _ in range(n))

    def _fill_map(self, m, entry, rng, depth):
        kf, vf = entry.fields_by_name["key"], entry.fields_by_name["value"]
        if vf.type == FD.TYPE_MESSAGE and depth + 1 >= MAX_DEPTH:
            return
        for _ in range(self._count(rng, depth)):
            k = self.scalar(kf, rng)
            if vf.type == FD.TYPE_MESSAGE:
                self.fill(m[k], rng, depth + 1)
            else:
                m[k] = self.scalar(vf, rng)


def _seeds_for(desc):
    widest = max((len(o.fields) for o in desc.oneofs), default=0)
    return max(MIN_SEEDS, widest)


# --------------------------------------------------------------------------
# the C tool


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} does not exist: build first (ninja -C {BUILD}) "
                    f"or set LARDER_BUILD_DIR", pytrace=False)
    return TOOL


def run_tool(tool, records):
    """records: [(full name, payload bytes)] -> [(status, bytes)]."""
    buf = bytearray()
    for name, payload in records:
        nb = name.encode()
        buf += struct.pack("<I", len(nb)) + nb + struct.pack("<I", len(payload)) + payload
    r = subprocess.run([str(tool)], input=bytes(buf), capture_output=True, timeout=300)
    assert r.returncode == 0, f"ld_pbrt exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    out, pos, replies = r.stdout, 0, []
    while pos < len(out):
        assert pos + 8 <= len(out), "truncated reply header"
        status, n = struct.unpack_from("<II", out, pos)
        pos += 8
        assert pos + n <= len(out), "truncated reply body"
        replies.append((status, out[pos:pos + n]))
        pos += n
    assert len(replies) == len(records), f"{len(records)} records sent, {len(replies)} replies"
    return replies


# --------------------------------------------------------------------------
# tests


def test_every_top_level_message_round_trips(top_level, tool):
    filler = Filler()
    cases = []   # (full name, class, seed, message, payload)
    for full_name in sorted(top_level):
        cls = top_level[full_name]
        for seed in range(_seeds_for(cls.DESCRIPTOR)):
            rng = random.Random(f"{full_name}/{seed}")
            msg = cls()
            filler.fill(msg, rng)
            cases.append((full_name, cls, seed, msg, msg.SerializeToString()))
        # The empty message, too.
        cases.append((full_name, cls, -1, cls(), b""))

    replies = run_tool(tool, [(c[0], c[4]) for c in cases])

    failures, ok_types = [], set()
    for (full_name, cls, seed, msg, payload), (status, data) in zip(cases, replies):
        if status != ST_OK:
            failures.append(f"{full_name} seed {seed}: status {status} "
                            f"({'unknown type' if status == ST_UNKNOWN_TYPE else 'unpack failed'})")
            continue
        back = cls.FromString(data)
        if back != msg:
            failures.append(f"{full_name} seed {seed}: differs after round trip "
                            f"({len(payload)} bytes in, {len(data)} out)")
            continue
        ok_types.add(full_name)

    assert not failures, f"{len(failures)} of {len(cases)} round trips failed:\n" + \
        "\n".join(failures[:50])

    # Coverage: every top-level message of every file in protos/.
    expected = set(top_level)
    assert ok_types == expected, f"not round-tripped: {sorted(expected - ok_types)}"

    # Coverage: every branch of every oneof reached while filling.
    missing = sorted(f"{o}.{f.name}" for o, od in filler.reached.items()
                     for f in od.fields if (o, f.name) not in filler.seen)
    assert not missing, f"oneof branches never exercised: {missing}"
    print(f"\n{len(expected)} message types, {len(cases)} round trips, "
          f"{len(filler.reached)} oneofs / {len(filler.seen)} branches covered, "
          f"{sum(len(c[4]) for c in cases)} bytes")


def test_every_file_has_top_level_coverage(modules, top_level):
    """Each .proto file that declares messages contributes all of them."""
    for rel, mod in modules.items():
        for desc in mod.DESCRIPTOR.message_types_by_name.values():
            assert desc.full_name in top_level, f"{desc.full_name} from {rel} not collected"
    assert len(modules) == len(_proto_files())


# Malformed payloads that Python's protobuf rejects too.
MALFORMED = [
    # FeatureSpecV2.value_type (field 2, varint) with a varint that never ends.
    ("feast.core.FeatureSpecV2", b"\x10\x80\x80\x80"),
    # Entity.spec (field 1, length-delimited) claiming far more bytes than sent.
    ("feast.core.Entity", b"\x0a\xff\xff\xff\x0f\x01\x02"),
    # Value.string_val (field 2) whose length runs past the end.
    ("feast.types.Value", b"\x12\x05ab"),
]

# Payloads protobuf-c rejects although Python's protobuf accepts them (it
# keeps a known field sent with the wrong wire type as an unknown field).
MALFORMED_C_ONLY = [
    # Entity.spec sent with wire type 0 (varint) instead of length-delimited.
    ("feast.core.Entity", b"\x08\x01"),
    # Field number 0 is never valid.
    ("feast.serving.GetOnlineFeaturesRequest", b"\x00\x01"),
]


def test_malformed_input_is_rejected(top_level, tool):
    for name, payload in MALFORMED:
        # Sanity: the reference implementation rejects it as well.
        with pytest.raises(DecodeError):
            top_level[name].FromString(payload)
    cases = MALFORMED + MALFORMED_C_ONLY
    replies = run_tool(tool, cases)
    for (name, payload), (status, data) in zip(cases, replies):
        assert (status, data) == (ST_UNPACK_FAILED, b""), \
            f"{name} {payload!r}: protobuf-c answered status {status}"


def test_unknown_fields_are_dropped(top_level, tool):
    """ld_pbrt strips unknown fields, so only fields protobuf-c decoded into
    its structs come back: this is what makes the round trip meaningful."""
    entity = top_level["feast.core.Entity"]()
    entity.spec.name = "driver"
    known = entity.SerializeToString()
    # Field 99 (varint 7) at the top level and inside Entity.spec.
    spec_bytes = entity.spec.SerializeToString() + b"\x98\x06\x07"
    payloads = [known + b"\x98\x06\x07", b"\x0a" + bytes([len(spec_bytes)]) + spec_bytes]
    replies = run_tool(tool, [("feast.core.Entity", p) for p in payloads])
    for status, data in replies:
        assert status == ST_OK
        assert data == known


def test_unknown_message_type(tool):
    replies = run_tool(tool, [("feast.core.NoSuchMessage", b""), ("", b"\x08\x01")])
    assert replies == [(ST_UNKNOWN_TYPE, b""), (ST_UNKNOWN_TYPE, b"")]


def test_zero_valued_oneof_members_keep_presence(top_level, tool):
    """Value{bool_val: false}, Value{int64_val: 0}, ... are not empty Values."""
    Value = top_level["feast.types.Value"]
    cases = []
    for f in Value.DESCRIPTOR.oneofs_by_name["val"].fields:
        v = Value()
        if f.type == FD.TYPE_MESSAGE:
            getattr(v, f.name).SetInParent()
        else:
            setattr(v, f.name, f.default_value)
        assert v.WhichOneof("val") == f.name
        cases.append(v)
    replies = run_tool(tool, [("feast.types.Value", v.SerializeToString()) for v in cases])
    for v, (status, data) in zip(cases, replies):
        assert status == ST_OK
        back = Value.FromString(data)
        assert back.WhichOneof("val") == v.WhichOneof("val"), v.WhichOneof("val")
        assert back == v
