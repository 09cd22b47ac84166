"""larder's test runner: build, start the backends, run every suite, count.

    tests/run [--build-dir DIR] [--no-node] [--only unit|integration|node]

1. Builds DIR (meson setup if it has no build.ninja, then ninja).
2. Starts one Redis and one PostgreSQL for the whole run (tests/fixture.py)
   and exports LARDER_TEST_REDIS, LARDER_TEST_PG_DSN and LARDER_BUILD_DIR
   (unless LARDER_TEST_REDIS / LARDER_TEST_PG_DSN are already set).
3. Runs the unit tests (meson test --suite unit), counting TAP subtests.
4. Runs the integration tests (pytest tests/integration), counting the
   junit xml.
5. Runs the Node tests (node --test tests/node/), counting its TAP summary.
6. Stops everything, prints the counts per part and, as the last line,
   "N passed, N failed". Exit code 0 iff nothing failed and something ran.

Ctrl-C / SIGTERM stop the running suite and every backend before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import fixture  # noqa: E402

PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

# Wall-clock limits per part; a hung suite is killed and counted as a failure.
LIMITS = {"build": 1800, "unit": 900, "integration": 1800, "node": 900}


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_child: "subprocess.Popen | None" = None


def _on_signal(signum, frame):
    raise Interrupted(signum)


def log(msg: str) -> None:
    print(f"[tests/run] {msg}", flush=True)


def run_child(argv, cwd=REPO, env=None, limit=None, stdout=None) -> int:
    """Run argv in its own process group, forwarding interruption to the whole
    group; kill the group if it outlives limit seconds (returns 124)."""
    global _child
    log("$ " + " ".join(str(a) for a in argv))
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, start_new_session=True)
    _child = proc
    try:
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            log(f"{argv[0]} still running after {limit}s: killing it")
            _kill_group(proc, signal.SIGTERM, 10)
            return 124
    except BaseException:
        # Interrupted (or anything else): stop the suite, letting it clean up
        # its own servers first (pytest tears its fixtures down on SIGINT).
        # A second Ctrl-C must not cut this short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        _kill_group(proc, signal.SIGINT, 15)
        raise
    finally:
        _child = None


def _kill_group(proc: subprocess.Popen, sig: int, grace: float) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group too
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------
# counting


def count_tap(text: str):
    ok = nok = 0
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"^not ok\b", s):
            nok += 1
        elif re.match(r"^ok\b", s):
            ok += 1
    return ok, nok


def count_unit(build_dir: Path):
    """Count TAP subtests in meson's testlog.json. An executable whose result
    is not OK but printed no 'not ok' line (crash, timeout, bad plan) counts as
    one failure."""
    path = build_dir / "meson-logs" / "testlog.json"
    passed = failed = 0
    bad = []
    if not path.exists():
        return 0, 1, ["no meson-logs/testlog.json"]
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        ok, nok = count_tap(e.get("stdout") or "")
        passed += ok
        failed += nok
        result = e.get("result", "")
        if result not in ("OK", "EXPECTEDFAIL", "SKIP") and nok == 0:
            failed += 1
            bad.append(f"{e.get('name')}: {result} with no failing TAP line")
        elif nok:
            bad.append(f"{e.get('name')}: {nok} failed")
    return passed, failed, bad


def count_junit(path: Path):
    """Count a pytest junit xml; a test with several entries (call plus
    teardown error) fails if any entry failed. Skips are neither."""
    root = ET.parse(path).getroot()
    tests = {}
    for tc in root.iter("testcase"):
        key = (tc.get("classname", ""), tc.get("name", ""))
        st = tests.get(key, "passed")
        if tc.find("failure") is not None or tc.find("error") is not None:
            st = "failed"
        elif tc.find("skipped") is not None and st != "failed":
            st = "skipped"
        tests[key] = st
    vals = list(tests.values())
    failed_names = [f"{c}::{n}" for (c, n), s in tests.items() if s == "failed"]
    return vals.count("passed"), vals.count("failed"), vals.count("skipped"), failed_names


def count_node(text: str):
    def num(key):
        m = re.findall(rf"^# {key} (\d+)\s*$", text, re.M)
        return int(m[-1]) if m else 0

    return num("pass"), num("fail") + num("cancelled"), num("skipped") + num("todo")


# --------------------------------------------------------------------------
# parts


def build(build_dir: Path) -> bool:
    if not (build_dir / "build.ninja").exists():
        if run_child(["meson", "setup", build_dir], limit=LIMITS["build"]) != 0:
            return False
    return run_child(["ninja", "-C", build_dir], limit=LIMITS["build"]) == 0


def part_unit(build_dir: Path, env) -> tuple:
    log_path = build_dir / "meson-logs" / "testlog.json"
    if log_path.exists():
        log_path.unlink()
    rc = run_child(["meson", "test", "-C", build_dir, "--suite", "unit", "--print-errorlogs",
                    "--num-processes", "2"], env=env, limit=LIMITS["unit"])
    if not log_path.exists():
        # "No suitable tests defined" exits 0 and writes no log.
        return (0, 0 if rc == 0 else 1, [] if rc == 0 else [f"meson test exited {rc}"])
    p, f, bad = count_unit(build_dir)
    if rc != 0 and f == 0:
        f, bad = 1, bad + [f"meson test exited {rc}"]
    return p, f, bad


def part_integration(build_dir: Path, env, tmp: Path) -> tuple:
    junit = tmp / "pytest-junit.xml"
    rc = run_child([PY, "-m", "pytest", "tests/integration", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}", "-rfE"],
                   env=env, limit=LIMITS["integration"])
    if not junit.exists():
        return 0, 1, [f"pytest exited {rc} without a junit xml"]
    try:
        p, f, s, names = count_junit(junit)
    except ET.ParseError as e:
        return 0, 1, [f"unreadable junit xml: {e}"]
    if s:
        log(f"integration: {s} skipped")
    # pytest: 0 ok, 1 some failed, 5 none collected; anything else is trouble.
    if rc not in (0, 1, 5) and f == 0:
        f, names = f + 1, names + [f"pytest exited {rc}"]
    elif rc == 1 and f == 0:
        f, names = 1, names + ["pytest exited 1 with no failed test in the xml"]
    return p, f, names


def node_modules(env) -> bool:
    """tests/node's packages (grpc-js, apache-arrow, DuckDB), installed once:
    the Node tests use them, and so do integration tests that read Arrow."""
    node_dir = REPO / "tests" / "node"
    if (node_dir / "node_modules").is_dir():
        return True
    # npm ci installs exactly the lock; npm 11 rejects a lock without the
    # optional platform packages of other systems (DuckDB's bindings), so
    # fall back to npm install, which still honours the pinned versions.
    ok = False
    if (node_dir / "package-lock.json").exists():
        ok = run_child(["npm", "ci", "--no-audit", "--no-fund"], cwd=node_dir, env=env,
                       limit=LIMITS["node"]) == 0
    return ok or run_child(["npm", "install", "--no-audit", "--no-fund"], cwd=node_dir,
                           env=env, limit=LIMITS["node"]) == 0


def part_node(env, tmp: Path) -> tuple:
    node_dir = REPO / "tests" / "node"
    if not any(node_dir.glob("*.test.mjs")):
        return 0, 0, []
    if not node_modules(env):
        return 0, 1, ["npm install failed"]
    out_path = tmp / "node-tap.txt"
    with open(out_path, "wb") as out:
        rc = run_child(["node", "--test", "--test-reporter=tap", "tests/node/"], env=env,
                       limit=LIMITS["node"], stdout=out)
    text = out_path.read_text(errors="replace")
    sys.stdout.write(text)
    sys.stdout.flush()
    p, f, s = count_node(text)
    names = [m.strip() for m in re.findall(r"^\s*not ok \d+ - (.*)$", text, re.M)]
    if s:
        log(f"node: {s} skipped")
    if rc != 0 and f == 0:
        f, names = 1, names + [f"node --test exited {rc}"]
    return p, f, names


# --------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tests/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.environ.get("LARDER_BUILD_DIR") or "build",
                    help="meson build directory (default: build)")
    ap.add_argument("--no-node", action="store_true", help="skip the Node tests")
    ap.add_argument("--only", choices=("unit", "integration", "node"),
                    help="run only one part")
    args = ap.parse_args(argv)

    os.chdir(REPO)
    build_dir = Path(args.build_dir)
    if not build_dir.is_absolute():
        build_dir = REPO / build_dir
    parts = [args.only] if args.only else ["unit", "integration"] + ([] if args.no_node else ["node"])

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)

    results = {}  # part -> (passed, failed, notes)
    redis = pg = None
    tmp = Path(tempfile.mkdtemp(prefix="larder-run-"))
    interrupted = None
    t0 = time.monotonic()
    try:
        if not build(build_dir):
            results["build"] = (0, 1, ["build failed"])
        else:
            env = dict(os.environ)
            env["LARDER_BUILD_DIR"] = str(build_dir)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            # Unit tests use them too (store_redis, store_sql).
            try:
                if not os.environ.get("LARDER_TEST_REDIS"):
                    redis = fixture.Redis().start()
                    env["LARDER_TEST_REDIS"] = redis.addr
                    log(f"redis on {redis.addr}")
                if not os.environ.get("LARDER_TEST_PG_DSN"):
                    pg = fixture.Postgres().start()
                    env["LARDER_TEST_PG_DSN"] = pg.dsn
                    log(f"postgres at {pg.dsn}")
            except fixture.FixtureError as e:
                log(f"backend start failed: {e}")
                results["backends"] = (0, 1, [str(e).splitlines()[0]])
            if "unit" in parts:
                results["unit"] = part_unit(build_dir, env)
            if "integration" in parts:
                if not node_modules(env):
                    log("npm install failed: integration tests that read Arrow will fail")
                results["integration"] = part_integration(build_dir, env, tmp)
            if "node" in parts:
                results["node"] = part_node(env, tmp)
    except Interrupted as e:
        interrupted = e
        log(f"interrupted by {e}: stopping")
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for b in (pg, redis):
            if b is not None:
                try:
                    b.stop()
                except Exception as ex:  # pragma: no cover
                    log(f"stopping {b!r}: {ex}")
        fixture.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    if interrupted is not None:
        results["interrupted"] = (0, 1, [str(interrupted)])

    total_p = sum(r[0] for r in results.values())
    total_f = sum(r[1] for r in results.values())
    print("", flush=True)
    log(f"finished in {time.monotonic() - t0:.0f}s ({build_dir})")
    for part, (p, f, notes) in results.items():
        print(f"{part}: {p} passed, {f} failed")
        for n in notes[:30]:
            print(f"    FAILED {n}")
    print(f"{total_p} passed, {total_f} failed", flush=True)
    if interrupted is not None:
        return 128 + interrupted.signum
    return 0 if total_f == 0 and total_p > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
