#!/usr/bin/env python3
"""Compare two proto trees for wire identity.

usage: check_wire.py [--skip PREFIX]... OURS_ROOT UPSTREAM_ROOT

Each root is compiled with protoc (plus /usr/include for Google's well-known
types) into a FileDescriptorSet. Every file, message, enum and service that
the upstream tree defines must exist in ours with the same package, imports,
field names/numbers/types/labels/type names/JSON names, oneof membership, map-ness,
packed-ness, enum values, reserved ranges, and rpc methods with the same
input/output types and streaming flags. Things only we define are listed but
are not errors. A proto3 `optional` field upstream is accepted as equal to
our explicit one-field oneof `_<name>`, which is how proto3 optional is
encoded in descriptors anyway.

--skip PREFIX leaves out upstream files whose path starts with PREFIX.
Exit status: 0 identical, 1 differences found, 2 usage or protoc error.

Not run by CI: the upstream trees are not available there.
"""
import argparse
import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

FD = descriptor_pb2.FieldDescriptorProto


def compile_root(root, skip):
    files = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".proto"):
                rel = os.path.relpath(os.path.join(dirpath, n), root)
                if not any(rel.startswith(p) for p in skip):
                    files.append(rel)
    files.sort()
    if not files:
        sys.exit(f"no .proto files under {root}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run(["protoc", f"--proto_path={root}", "--proto_path=/usr/include",
                        "--include_imports", f"--descriptor_set_out={out}"] + files,
                       check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
    return files, fds


def index(fds):
    """full name -> (kind, proto, file name) for messages, enums, services."""
    idx, files = {}, {}
    for fd in fds.file:
        files[fd.name] = fd
        pkg = "." + fd.package if fd.package else ""

        def walk_msg(m, prefix):
            name = f"{prefix}.{m.name}"
            idx[name] = ("message", m, fd.name)
            for nm in m.nested_type:
                walk_msg(nm, name)
            for e in m.enum_type:
                idx[f"{name}.{e.name}"] = ("enum", e, fd.name)

        for m in fd.message_type:
            walk_msg(m, pkg)
        for e in fd.enum_type:
            idx[f"{pkg}.{e.name}"] = ("enum", e, fd.name)
        for s in fd.service:
            idx[f"{pkg}.{s.name}"] = ("service", s, fd.name)
    return idx, files


def field_sig(m, f):
    oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
    return {
        "name": f.name,
        "type": FD.Type.Name(f.type),
        "label": FD.Label.Name(f.label),
        "type_name": f.type_name,
        "oneof": oneof,
        "json_name": f.json_name,
        "packed": f.options.packed if f.options.HasField("packed") else None,
        "deprecated": f.options.deprecated,
    }


def compare_message(name, up, ours, diffs, notes):
    uf = {f.number: f for f in up.field}
    of = {f.number: f for f in ours.field}
    for num in sorted(set(uf) | set(of)):
        if num not in of:
            diffs.append(f"{name}: field {num} ({uf[num].name}) missing in ours")
            continue
        if num not in uf:
            diffs.append(f"{name}: field {num} ({of[num].name}) not in upstream")
            continue
        u, o = field_sig(up, uf[num]), field_sig(ours, of[num])
        if uf[num].proto3_optional and not of[num].proto3_optional:
            oneof_fields = [f for f in ours.field
                            if f.HasField("oneof_index") and f.oneof_index == of[num].oneof_index]
            if o["oneof"] == "_" + o["name"] and len(oneof_fields) == 1:
                notes.append(f"{name}.{o['name']}: proto3 optional -> oneof {o['oneof']}")
            else:
                diffs.append(f"{name}.{u['name']}: upstream proto3 optional, ours not "
                             f"a one-field oneof _{u['name']}")
        for k in u:
            if u[k] != o[k]:
                (notes if k == "deprecated" else diffs).append(
                    f"{name} field {num}: {k} upstream={u[k]!r} ours={o[k]!r}")
    if up.options.map_entry != ours.options.map_entry:
        diffs.append(f"{name}: map_entry differs")
    if up.options.deprecated != ours.options.deprecated:
        notes.append(f"{name}: message deprecated flag differs")
    ur = sorted((r.start, r.end) for r in up.reserved_range)
    orr = sorted((r.start, r.end) for r in ours.reserved_range)
    if ur != orr or sorted(up.reserved_name) != sorted(ours.reserved_name):
        diffs.append(f"{name}: reserved ranges/names differ")
    uo = sorted(o.name for o in up.oneof_decl)
    oo = sorted(o.name for o in ours.oneof_decl)
    if uo != oo:
        diffs.append(f"{name}: oneofs upstream={uo} ours={oo}")


def compare_enum(name, up, ours, diffs, notes):
    uv = [(v.name, v.number) for v in up.value]
    ov = [(v.name, v.number) for v in ours.value]
    if sorted(uv) != sorted(ov):
        diffs.append(f"{name}: enum values upstream={uv} ours={ov}")
    if up.options.allow_alias != ours.options.allow_alias:
        diffs.append(f"{name}: allow_alias differs")
    ur = sorted((r.start, r.end) for r in up.reserved_range)
    orr = sorted((r.start, r.end) for r in ours.reserved_range)
    if ur != orr or sorted(up.reserved_name) != sorted(ours.reserved_name):
        diffs.append(f"{name}: enum reserved ranges/names differ")


def compare_service(name, up, ours, diffs, notes):
    def sig(m):
        return (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
    um = {m.name: sig(m) for m in up.method}
    om = {m.name: sig(m) for m in ours.method}
    for mname in sorted(set(um) | set(om)):
        if mname not in om:
            diffs.append(f"{name}/{mname}: method missing in ours")
        elif mname not in um:
            diffs.append(f"{name}/{mname}: method not in upstream")
        elif um[mname] != om[mname]:
            diffs.append(f"{name}/{mname}: upstream={um[mname]} ours={om[mname]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip", action="append", default=[])
    ap.add_argument("ours")
    ap.add_argument("upstream")
    args = ap.parse_args()
    try:
        _, ours_fds = compile_root(args.ours, [])
        up_files, up_fds = compile_root(args.upstream, args.skip)
    except subprocess.CalledProcessError as e:
        print(e, file=sys.stderr)
        return 2
    oidx, ofiles = index(ours_fds)
    uidx, ufiles = index(up_fds)
    diffs, notes = [], []

    for fname in up_files:
        u = ufiles[fname]
        o = ofiles.get(fname)
        if o is None:
            diffs.append(f"file {fname} missing in ours")
            continue
        if u.package != o.package:
            diffs.append(f"file {fname}: package {u.package!r} vs {o.package!r}")
        if (u.syntax or "proto2") != (o.syntax or "proto2"):
            diffs.append(f"file {fname}: syntax {u.syntax!r} vs {o.syntax!r}")
        if sorted(u.dependency) != sorted(o.dependency):
            diffs.append(f"file {fname}: imports {sorted(u.dependency)} vs {sorted(o.dependency)}")

    counts = {"message": 0, "enum": 0, "service": 0}
    up_set = set(up_files)
    for name, (kind, up, fname) in sorted(uidx.items()):
        if fname not in up_set:
            continue  # well-known types pulled in by --include_imports
        counts[kind] += 1
        if name not in oidx:
            diffs.append(f"{kind} {name} missing in ours")
            continue
        okind, ours, ofname = oidx[name]
        if okind != kind:
            diffs.append(f"{name}: {kind} upstream, {okind} ours")
            continue
        if ofname != fname:
            diffs.append(f"{name}: defined in {fname} upstream, {ofname} ours")
        {"message": compare_message, "enum": compare_enum,
         "service": compare_service}[kind](name, up, ours, diffs, notes)

    extra = sorted(n for n, (_, _, f) in oidx.items()
                   if n not in uidx and not f.startswith("google/protobuf/"))
    print(f"compared {len(up_files)} files: {counts['message']} messages, "
          f"{counts['enum']} enums, {counts['service']} services")
    for n in notes:
        print("note:", n)
    if extra:
        print(f"{len(extra)} names defined only in ours (not checked)")
    for d in diffs:
        print("DIFF:", d)
    print("wire-identical" if not diffs else f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
