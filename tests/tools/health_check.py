#!/usr/bin/env python3
"""Ask each NAME=HOST:PORT for grpc.health.v1 status with Python grpcio and
print one line per server. Exit 1 unless every server says SERVING.

Stubs are generated into a temp dir from protos/ at run time. The health
proto's package is grpc.health.v1, which would shadow grpcio's own `grpc`
package if imported by its path, so it is compiled from a copy under a
different directory (same package, same wire format)."""
import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time


def load_health(protos):
    tmp = tempfile.mkdtemp(prefix="ld-health-")
    os.makedirs(os.path.join(tmp, "ldhealth"))
    shutil.copy(os.path.join(protos, "grpc/health/v1/health.proto"), os.path.join(tmp, "ldhealth"))
    subprocess.run(["protoc", "-I", tmp, "--python_out", tmp, "--grpc_python_out", tmp,
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    "ldhealth/health.proto"], check=True)
    sys.path.insert(0, tmp)
    return importlib.import_module("ldhealth.health_pb2"), importlib.import_module("ldhealth.health_pb2_grpc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protos", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("servers", nargs="+", help="NAME=HOST:PORT")
    args = ap.parse_args()
    import grpc
    pb, pb_grpc = load_health(args.protos)
    ok = True
    for spec in args.servers:
        name, target = spec.split("=", 1)
        ch = grpc.insecure_channel(target)
        status = None
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            try:
                r = pb_grpc.HealthStub(ch).Check(pb.HealthCheckRequest(), timeout=1)
                status = pb.HealthCheckResponse.ServingStatus.Name(r.status)
                break
            except grpc.RpcError as e:
                status = e.code().name
                time.sleep(0.1)
        print(f"{name:<9} {target:<22} {status}")
        ok = ok and status == "SERVING"
        ch.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
