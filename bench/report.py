#!/usr/bin/python3
"""bench/report.py: docs/benchmarks.md and docs/img/*.png from bench/run-all's data.

usage: bench/report.py [DATA] [--md FILE] [--img DIR]
  DATA   docs/benchmarks-data.json (what bench/run-all writes): the machine, the
         versions, and per step its command, status and records
         ({name, metric, value, unit[, round, reference, params]}).

Every number in the report is computed here from DATA; the only figures not
measured in the run are Feast's published ones below, labelled as such with
their source wherever they appear. Plots need gnuplot (Debian: gnuplot-nox);
without it the report is written and says the plots are missing.
Standard library only.
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# Published figures of another system (not measured here). Source and conditions:
# /work/shared/reference/performance-anchors.md section 1.2, which cites
#   feast-dev/feast-benchmarks:python/java_x_python_p99_by_batch_size.csv (Python, Java)
#   feast-dev/feast:docs/blog/go-feature-server-benchmarks.md (Go; and the feature sweep)
# Hardware: one AWS c5.4xlarge (16 vCPU), Redis on the same host, vegeta (HTTP,
# 5 connections) or ghz (gRPC) clients.
FEAST_SRC = ("Feast's published p99 (feast-dev/feast-benchmarks "
             "`python/java_x_python_p99_by_batch_size.csv`; Feast blog "
             "`docs/blog/go-feature-server-benchmarks.md`), measured by Feast on an AWS "
             "c5.4xlarge (16 vCPU) with other clients and load shapes")
FEAST_ROWS_X = [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
FEAST_ROWS = {  # p99 ms at 50 features
    "Feast Python (HTTP)": [7.23, 15.14, 23.96, 32.80, 41.44, 50.43, 59.88, 94.57, 103.28,
                            111.93, 124.87],
    "Feast Go (HTTP, alpha)": [4.32, 3.88, 6.09, 8.16, 10.13, 12.32, 14.3, 16.28, 18.53,
                               20.27, 22.18],
    "Feast Java (gRPC)": [0.80, 2.23, 3.66, 4.80, 6.09, 7.29, 8.60, 10.18, 11.91, 14.32, 17.00],
}
FEAST_FEAT_X = [50, 100, 150, 200, 250]
FEAST_FEAT = {  # p99 ms at 1 row (the Go blog publishes no Java curve for this)
    "Feast Python (HTTP)": [8.42, 10.28, 13.36, 16.69, 45.41],
    "Feast Go (HTTP, alpha)": [1.78, 2.43, 2.98, 3.33, 3.92],
}

# columns of the main tables: metric -> header
STD = [("rps", "calls/s"), ("p50", "p50 ms"), ("p99", "p99 ms"), ("p999", "p99.9 ms"),
       ("cpu_per_call", "server CPU µs/call"), ("rss_peak", "peak RSS MiB")]
STD_KEYS = [m for m, _ in STD]
LATENCY = ("p50", "p90", "p99", "p999")
RATIO_METRICS = [("rps", "calls/s"), ("p99", "p99"), ("cpu_per_call", "CPU/call")]
NAMES = {"store_cpu_per_call": "store CPU µs/call", "store_rss_peak": "store peak RSS MiB",
         "hmget_per_call": "HMGET/call", "hmget_us": "Redis µs/HMGET",
         "other_pct": "other_%", "steal_pct": "steal_%", "resp_bytes": "response kB", "load_ms": "load ms",
         "ready_ms": "start to serving ms", "rss": "RSS MiB", "file_bytes": "file MB"}


# ---------------------------------------------------------------------------
# records


class Series:
    """All values of one (name, metric) in a step: one per round."""

    def __init__(self, name, metric, unit):
        self.name, self.metric, self.unit = name, metric, unit
        self.by_round = {}  # round -> value
        self.params, self.reference = {}, None
        self.summary = None  # (median, min, max) when the script aggregated the rounds

    def add(self, rec, idx):
        r = rec.get("round")
        self.by_round[r if r is not None else idx] = rec["value"]
        self.params = rec.get("params") or self.params
        self.reference = rec.get("reference") or self.reference
        if isinstance(rec.get("min"), (int, float)) and isinstance(rec.get("max"), (int, float)):
            self.summary = (rec["value"], rec["min"], rec["max"])

    def values(self):
        """The per-round values; for a record that already holds the median and the
        min-max of its rounds, those three (their median, min and max are the same)."""
        if self.summary and len(self.by_round) == 1:
            return list(self.summary)
        return [v for v in self.by_round.values() if isinstance(v, (int, float))]


class Step:
    def __init__(self, entry):
        self.e = entry
        self.name = entry["name"]
        self.meta = {}
        self.series = {}  # (name, metric) -> Series
        self.order = []   # names in order of first appearance
        self.published = []  # records of other systems' published figures
        counts = {}
        for rec in entry.get("records") or []:
            if not isinstance(rec, dict) or "name" not in rec or "metric" not in rec:
                continue
            if rec.get("kind") == "published" or str(rec["name"]).startswith("published."):
                self.published.append(rec)
                continue
            if rec["metric"] == "meta":
                self.meta.update(rec.get("params") or {})
                continue
            if not isinstance(rec.get("value"), (int, float)):
                continue
            key = (rec["name"], rec["metric"])
            if key not in self.series:
                self.series[key] = Series(rec["name"], rec["metric"], rec.get("unit"))
            if rec["name"] not in self.order:
                self.order.append(rec["name"])
            counts[key] = counts.get(key, 0) + 1
            self.series[key].add(rec, counts[key])

    def get(self, name, metric):
        return self.series.get((name, metric))

    def metrics_of(self, name):
        return [m for (n, m) in self.series if n == name]

    def params(self, name):
        for (n, _), s in self.series.items():
            if n == name and s.params:
                return s.params
        return {}

    def reference(self, name):
        for (n, _), s in self.series.items():
            if n == name and s.reference:
                return s.reference
        return None

    def med(self, name, metric):
        s = self.get(name, metric)
        v = s.values() if s else []
        return statistics.median(v) if v else None

    def ratio(self, name, metric):
        """larder / reference per round (matched by round), as a list."""
        ref = self.reference(name)
        a, b = self.get(name, metric), self.get(ref, metric) if ref else None
        if not a or not b:
            return []
        return [a.by_round[r] / b.by_round[r] for r in a.by_round
                if r in b.by_round and b.by_round[r]]


def mmm(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def sig(v, n=3):
    """n significant digits, no exponent for the magnitudes we print."""
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 10 ** n:
        return f"{v:,.0f}"
    d = max(0, n - 1 - int(math.floor(math.log10(abs(v)))))
    return f"{v:.{d}f}"


def scale(metric, unit):
    """(factor, display unit) for a metric's values."""
    u = (unit or "").strip()
    if metric in LATENCY:
        return (1e-3, "ms") if u in ("us", "µs") else (1.0, u)
    if u == "KiB":
        return 1 / 1024, "MiB"
    if u in ("B", "bytes"):
        if metric == "resp_bytes":
            return 1e-3, "kB"
        return 1e-6, "MB"
    return 1.0, u


def cell(series, ndig=3):
    if series is None:
        return "-"
    m = mmm(series.values())
    if m is None:
        return "-"
    f, _ = scale(series.metric, series.unit)
    if series.metric == "rps" or (series.unit or "").endswith("/s") and m[0] * f >= 1000:
        fmt = lambda v: f"{v * f:,.0f}"  # noqa: E731
    else:
        fmt = lambda v: sig(v * f, ndig)  # noqa: E731
    if m[1] == m[2]:
        return fmt(m[0])
    return f"{fmt(m[0])} ({fmt(m[1])}–{fmt(m[2])})"


def ratio_cell(vals):
    m = mmm(vals)
    if m is None:
        return "-"
    if m[1] == m[2]:
        return f"{m[0]:.2f}"
    return f"{m[0]:.2f} ({m[1]:.2f}–{m[2]:.2f})"


def header_for(step, metric):
    if metric in dict(STD):
        return dict(STD)[metric]
    if metric in NAMES:
        return NAMES[metric]
    units = {s.unit for (n, m), s in step.series.items() if m == metric}
    u = next(iter(units)) if len(units) == 1 else ""
    _, du = scale(metric, u)
    label = re.sub(r"_median$", "", metric)
    return f"{label} ({du})" if du and du not in ("x", "count") else label


def table(step, names, metrics, with_ratios=True):
    """Markdown table: one row per name, median (min–max) per metric, ratios to the
    in-run reference."""
    ratios = []
    if with_ratios:
        for m, label in RATIO_METRICS:
            if any(step.ratio(n, m) for n in names):
                ratios.append((m, label))
    if len(metrics) > 8 and len(names) <= 6 and not ratios:
        # many metrics, few cases: one row per metric reads better
        out = ["| metric | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for m in metrics:
            out.append(f"| {header_for(step, m)} | "
                       + " | ".join(cell(step.get(n, m)) for n in names) + " |")
        return out
    hdr = ["case"] + [header_for(step, m) for m in metrics]
    if ratios:
        hdr += [f"÷ ref. {label}" for _, label in ratios] + ["reference"]
    out = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for n in names:
        p = step.params(n)
        label = n + (" *(reference)*" if p.get("reference_case") else "")
        row = [label] + [cell(step.get(n, m)) for m in metrics]
        if ratios:
            row += [ratio_cell(step.ratio(n, m)) for m, _ in ratios]
            row.append(step.reference(n) if any(step.ratio(n, m) for m, _ in ratios) else "")
        out.append("| " + " | ".join(row) + " |")
    return out


def area_tables(step, exclude=lambda n: False):
    """The step's records as tables: names with latency/throughput metrics first
    (standard columns, then the others they have), then the rest."""
    names = [n for n in step.order if not exclude(n)]
    main = [n for n in names if any(m in STD_KEYS for m in step.metrics_of(n))]
    rest = [n for n in names if n not in main]
    out = []
    if main:
        extra = []
        for n in main:
            for m in step.metrics_of(n):
                if m not in STD_KEYS and m not in extra:
                    extra.append(m)
        metrics = [m for m in STD_KEYS if any(step.get(n, m) for n in main)] + extra
        out += table(step, main, metrics) + [""]
    if rest:
        metrics = []
        for n in rest:
            for m in step.metrics_of(n):
                if m not in metrics:
                    metrics.append(m)
        out += table(step, rest, metrics) + [""]
    return out


# ---------------------------------------------------------------------------
# fits and the generated text of the growth section


def linfit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1 - ss_res / ss_tot) if ss_tot > 0 else 1.0


def loglog_slope(xs, ys):
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    return linfit([p[0] for p in pts], [p[1] for p in pts])[1]


def num(x):
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,g}"


def at(x, unit):
    """'1 row', '10 rows': unit is plural."""
    return f"{num(x)} {unit[:-1] if x == 1 and unit.endswith('s') else unit}"


def per_unit(b, per, yunit):
    """A slope b (y per one x) as 'B unit per N <per>s', N a power of ten that makes B
    readable."""
    n = 1
    while b and abs(b * n) < 0.1 and n < 10 ** 9:
        n *= 10
    return f"{sig(b * n)} {yunit} per {num(n) + ' ' + per + 's' if n > 1 else per}"


def describe_growth(what, xs, ys, xunit, yunit, per):
    """Facts about how ys grows with xs, as sentences computed from the numbers."""
    pts = sorted((x, y) for x, y in zip(xs, ys) if y is not None)
    if len(pts) < 2:
        return f"{what}: fewer than two points measured; nothing to say about growth."
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    s = (f"{what} goes from {sig(y0)} {yunit} at {at(x0, xunit)} to {sig(y1)} {yunit} at "
         f"{at(x1, xunit)}: ×{y1 / y0:.2f} for ×{num(x1 / x0)} the {xunit}.")
    if len(pts) == 2:
        b = (y1 - y0) / (x1 - x0)
        return s + (f" Two points only: {per_unit(b, per, yunit)} between them; the "
                    "shape of the curve is not measured.")
    a, b, r2 = linfit(xs, ys)
    k = loglog_slope(xs, ys)
    s += (f" Least-squares line: {sig(a)} {yunit} + {per_unit(b, per, yunit)} "
          f"(R² = {r2:.3f}); log–log slope {k:.2f} (1 = proportional, 0 = flat).")
    # does the top of the range follow the line of the lower half?
    half = [p for p in pts if p[0] <= (x0 + x1) / 2]
    verdict = None
    if len(half) >= 2:
        ha, hb, _ = linfit([p[0] for p in half], [p[1] for p in half])
        pred = ha + hb * x1
        if pred > 0:
            q = y1 / pred
            s += (f" The line through the lower half ({sig(ha)} {yunit} + "
                  f"{per_unit(hb, per, yunit)}) predicts {sig(pred)} {yunit} at {num(x1)}; "
                  f"measured ×{q:.2f} of that.")
            if q > 1.15:
                verdict = "faster than linear at the top of the range"
            elif q < 0.85:
                verdict = "slower than linear at the top of the range"
    if verdict is None:
        if k is not None and k < 0.2:
            verdict = "nearly flat: the fixed cost per call dominates over this range"
        elif r2 >= 0.98:
            verdict = "linear (a fixed cost plus a constant cost per " + per + ")"
        else:
            verdict = "not a clean straight line (R² below 0.98): noise or a change of regime"
    return s + f" Verdict from these numbers: **{verdict}**."


# ---------------------------------------------------------------------------
# gnuplot


def gp_text(t):
    """Text for a double-quoted gnuplot string in enhanced mode: no markup characters."""
    t = t.replace("\\", "/").replace('"', "'")
    for ch in "_^@{}&~":
        t = t.replace(ch, "\\\\" + ch)
    return t


def gnuplot_ok():
    return shutil.which("gnuplot") is not None


def plot(path, title, xlabel, ylabel, series, logx=False, logy=False, note=None,
         xrange=None):
    """series: list of dicts {title, points: [(x, y[, ylo, yhi])], style: 'ours'|'published'
    |'ref'}; writes a PNG with gnuplot; returns True when written."""
    if not gnuplot_ok() or not any(s["points"] for s in series):
        return False
    tmp = tempfile.mkdtemp(prefix="larder-report-")
    try:
        cmds = [
            "set terminal pngcairo size 960,680 enhanced font 'DejaVu Sans,11' "
            "background rgb 'white'",
            f"set output '{path}'",
            f"set title \"{gp_text(title)}\" font 'DejaVu Sans,14' offset 0,0.8"
            + (f"\nset label 1 \"{gp_text(note)}\" at graph 0.5, graph 1.035 center "
               "font 'DejaVu Sans,9' tc rgb '#444444'" if note else ""),
            f"set xlabel \"{gp_text(xlabel)}\"", f"set ylabel \"{gp_text(ylabel)}\"",
            "set grid xtics ytics mxtics mytics lc rgb '#e4e4e4', lc rgb '#f2f2f2'",
            "set key below left Left reverse maxrows 3 width 2 samplen 3 spacing 1.2 "
            "font 'DejaVu Sans,10'",
            "set border 3", "set tics nomirror", "set tmargin 5",
        ]
        if logx:
            cmds += ["set logscale x", "set format x '%.0s%c'"]
        if logy:
            cmds += ["set logscale y", "set format y '%g'"]
        if xrange:
            cmds.append(f"set xrange [{xrange[0]}:{xrange[1]}]")
        ours = ["#1f4e9c", "#c0392b", "#2e8b57", "#8e44ad", "#d35400"]
        pub = ["#7f8c8d", "#b07d2b", "#7b68ae", "#6c7a89"]
        terms = []
        oi = pi = 0
        for i, s in enumerate(series):
            if not s["points"]:
                continue
            dat = os.path.join(tmp, f"s{i}.dat")
            with open(dat, "w") as f:
                for p in s["points"]:
                    f.write(" ".join(repr(float(v)) for v in p) + "\n")
            t = gp_text(s["title"])
            if s["style"] == "published":
                c = pub[pi % len(pub)]
                pi += 1
                terms.append(f"'{dat}' using 1:2 with linespoints dt 2 lw 1.5 pt {4 + 2 * pi} "
                             f"ps 0.9 lc rgb '{c}' title \"{t}\"")
            elif s["style"] == "ref":
                c = "#555555"
                terms.append(f"'{dat}' using 1:2 with lines dt 3 lw 1.5 lc rgb '{c}' "
                             f"title \"{t}\"")
            else:
                c = ours[oi % len(ours)]
                oi += 1
                if len(s["points"][0]) >= 4:
                    terms.append(f"'{dat}' using 1:2:3:4 with yerrorlines lw 2 pt 7 ps 0.9 "
                                 f"lc rgb '{c}' title \"{t}\"")
                else:
                    terms.append(f"'{dat}' using 1:2 with linespoints lw 2 pt 7 ps 0.9 "
                                 f"lc rgb '{c}' title \"{t}\"")
        cmds.append("plot " + ", \\\n     ".join(terms))
        script = os.path.join(tmp, "plot.gp")
        with open(script, "w") as f:
            f.write("\n".join(c for c in cmds if c) + "\n")
        r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"report: gnuplot failed for {path}: {r.stderr}", file=sys.stderr)
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# areas


def online_sweep(step, axis):
    """{proto: [(x, median p99 ms, min, max, median calls/s, series name)]} for the sweep
    along `axis` ('rows' at 50 features, or 'features' at 1 row), at the concurrency
    with the most points."""
    pts = {}
    for n in step.order:
        p = step.params(n)
        if p.get("store") != "redis" or "rows" not in p or p.get("proto") not in ("gRPC", "HTTP"):
            continue
        if axis == "rows" and p.get("features") != 50:
            continue
        if axis == "features" and p.get("rows") != 1:
            continue
        s = step.get(n, "p99")
        m = mmm(s.values()) if s else None
        if m is None:
            continue
        pts.setdefault((p["proto"], p["conc"]), []).append(
            (p[axis], m[0] / 1000, m[1] / 1000, m[2] / 1000, step.med(n, "rps"), n))
    best = {}
    for (proto, conc), v in pts.items():
        if proto not in best or len(v) > len(best[proto][1]):
            best[proto] = (conc, sorted(v))
    return best


def size_of(name, params):
    """Feature rows of a PIT measurement: params {feature_rows} or from the name:
    'ExF' (entity x feature rows, offline_bench.mjs's labels, e.g. 100kx1M) or
    'N feature rows'."""
    rows = params.get("feature_rows") or params.get("input_rows")
    if rows:
        return int(rows)
    mult = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
    m = re.search(r"(\d+(?:\.\d+)?)([kKmMgG]?)x(\d+(?:\.\d+)?)([kKmMgG]?)\b", name)
    if m:
        return int(float(m.group(3)) * mult[m.group(4).lower()])
    m = re.search(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*feature[ _-]?rows", name)
    if m:
        return int(float(m.group(1)) * mult[m.group(2).lower()])
    return None


PIT_SYSTEMS = {"larder": "larder-offline (end to end over Flight)",
               "larder_engine": "larder join engine alone (ld-pit-arrow, file reads excluded)",
               "duckdb": "DuckDB ASOF JOIN with Feast's rules",
               "duckdb_bare": "DuckDB bare ASOF JOIN (no tie rule)"}


def pit_points(step):
    """PIT join measurements of the offline step, by system: {system: {feature_rows:
    {'time_s': (med, lo, hi), 'rss_kib': (med, lo, hi)}}}. A record counts when its
    name says point-in-time join ('pit', 'asof', 'join') and carries a size; the
    system comes from the metric or the name (duckdb, bare ASOF, else larder);
    wall-time metrics ('wall', 'time', 'elapsed'; not the phases of a call) and
    peak-RSS metrics ('rss', not a ratio) are used."""
    out = {}
    for (name, metric), s in step.series.items():
        low, ml = name.lower(), metric.lower()
        if not any(w in low for w in ("pit", "asof", "as-of", "point-in-time", "join")):
            continue
        rows = size_of(name, s.params or {})
        if rows is None:
            continue
        both = low + " " + ml
        system = ("duckdb_bare" if "duckdb" in both and "bare" in both else
                  "duckdb" if "duckdb" in both else
                  "larder_engine" if "engine" in ml and "join" in ml else "larder")
        u = (s.unit or "").lower()
        vals = s.values()
        if not vals:
            continue
        if "rss" in ml and "over" not in ml and "ratio" not in ml:
            f = {"kib": 1, "mib": 1024, "gib": 1024 ** 2, "b": 1 / 1024, "bytes": 1 / 1024,
                 "mb": 1e6 / 1024, "kb": 1000 / 1024}.get(u)
            key = "rss_kib"
        elif (u in ("s", "ms", "us", "µs")
              and (any(w in ml for w in ("wall", "time", "elapsed")) or system == "larder_engine")
              and not any(w in ml for w in ("doput", "first", "stream", "ratio", "info",
                                            "read"))):
            f = {"s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}[u]
            key = "time_s"
        else:
            continue
        if f is None:
            continue
        out.setdefault(system, {}).setdefault(rows, {})[key] = mmm([v * f for v in vals])
    return out


STEP_TEXT = {
    "health": (
        "The cheapest call each side can answer: larder's gRPC health Check (ld-load, C core, "
        "one HTTP/2 connection with 32 streams in flight) against Redis's PING (redis-benchmark "
        "`-t ping_mbulk`, 32 connections), on each of the three larder servers. Ratios are "
        "larder ÷ Redis in the same round."),
    "registry": (
        "`larder-registry` on its file backend (and PostgreSQL for apply): GetFeatureView and "
        "ListFeatureViews against a registry of 1,000 feature views of 10 Int64 features each, "
        "ApplyEntity (an update each time), the start of a 10,000-view registry, and the "
        "ListFeatureViews sweep from 10 to 10,000 views (one server per size, 1 in flight). "
        "The reference is the same server's health Check at the same concurrency."),
    "online": (
        "`larder-online` over Redis in Feast's benchmark shape (feast-dev/feast-benchmarks): "
        "25 feature views × 10 Int64 features, 10,000 entities, feature services of 50 to 250 "
        "features; requests over gRPC (ld-load) and HTTP/JSON (wrk), each call repeating one "
        "fixed request. References in the same run: the same server's gRPC health Check and "
        "HTTP `GET /health`, and `redis-benchmark` HMGET of 10 fields on a hash of the same "
        "size. Cases named `R×F @C`: R entity rows × F features, C calls in flight."),
    "offline": (
        "`larder-offline`: point-in-time join (historical retrieval) against DuckDB's ASOF "
        "JOIN on the same data in the same run, Arrow Flight DoGet throughput, peak RSS."),
    "materialize": (
        "Materialization into Redis in Feast's layout, rows/s against `redis-benchmark` HSET "
        "throughput in the same run."),
}


def headlines(steps):
    """A few sentences from the tables, for readers who stop at the top."""
    out = []

    def rr(st, name, metric):
        return ratio_cell(st.ratio(name, metric))

    st = steps.get("health")
    if st and st.e.get("status") == "ok":
        for n in st.order:
            if st.reference(n) and st.ratio(n, "rps"):
                out.append(f"Empty call, {n} ÷ {st.reference(n)}: calls/s {rr(st, n, 'rps')}, "
                           f"server CPU per call {rr(st, n, 'cpu_per_call')}.")
    st = steps.get("registry")
    if st and st.e.get("status") == "ok" and st.ratio("GetFeatureView @32", "rps"):
        out.append("Registry GetFeatureView ÷ health Check, 32 in flight: calls/s "
                   f"{rr(st, 'GetFeatureView @32', 'rps')}.")
    st = steps.get("online")
    if st and st.e.get("status") == "ok":
        for proto in ("gRPC", "HTTP"):
            n = f"{proto} 1x50 @32"
            if st.ratio(n, "rps"):
                out.append(f"Online {proto} 1 row × 50 features ÷ {st.reference(n)}, 32 in "
                           f"flight: calls/s {rr(st, n, 'rps')}.")
        for proto, feast in (("gRPC", "Feast Java (gRPC)"), ("HTTP", "Feast Go (HTTP, alpha)")):
            got = [(r, st.get(f"{proto} {r}x50 @1", "p99")) for r in (1, 100)]
            got = [(r, s_) for r, s_ in got if s_]
            if got:
                ys = FEAST_ROWS[feast]
                out.append(f"Online {proto} p99 at 1 in flight, 50 features: " + "; ".join(
                    f"{r} row{'s' * (r > 1)} {cell(s_)} ms" for r, s_ in got)
                    + f" (published {feast} figures on other hardware: "
                    + "; ".join(f"{r} row{'s' * (r > 1)} {ys[FEAST_ROWS_X.index(r)]:g} ms"
                                for r, _ in got) + ").")
    st = steps.get("offline")
    if st and st.e.get("status") == "ok":
        pit = pit_points(st)
        common = sorted(set(pit.get("larder", {})) & set(pit.get("duckdb", {})))
        common = [r for r in common if pit["larder"][r].get("time_s")
                  and pit["duckdb"][r].get("time_s")]
        if common:
            r = common[-1]
            a, b = pit["larder"][r]["time_s"], pit["duckdb"][r]["time_s"]
            # the script's own per-round ratio when it has one, else the ratio of medians
            rat = [ser for (n, m), ser in st.series.items() if size_of(n, ser.params or {}) == r
                   and "ratio" in m and "larder" in m and "duckdb" in m]
            rtxt = (f"÷ {cell(rat[0])}, per-round ratio" if rat
                    else f"÷ {a[0] / b[0]:.2f}, ratio of the medians")
            out.append(f"Point-in-time join at {r:,} feature rows, end to end: larder "
                       f"{sig(a[0])} s, DuckDB ASOF JOIN with Feast's rules {sig(b[0])} s in the "
                       f"same run ({rtxt}).")
    st = steps.get("materialize")
    if st and st.e.get("status") == "ok":
        for n in st.order:
            for m in st.metrics_of(n):
                if st.ratio(n, m):
                    out.append(f"Materialization {n} ÷ {st.reference(n)}, {m}: "
                               f"{rr(st, n, m)}.")
    return out


def fmt_kv(d):
    return "; ".join(f"{k}: {v}" for k, v in d.items() if v not in (None, "", [], {}))


def main():
    ap = argparse.ArgumentParser(description="Write docs/benchmarks.md and its plots.")
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "docs/benchmarks-data.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs/benchmarks.md"))
    ap.add_argument("--img", default=os.path.join(ROOT, "docs/img"))
    args = ap.parse_args()
    with open(args.data) as f:
        data = json.load(f)
    os.makedirs(args.img, exist_ok=True)
    md_dir = os.path.dirname(os.path.abspath(args.md))
    img_rel = os.path.relpath(os.path.abspath(args.img), md_dir)
    steps = {e["name"]: Step(e) for e in data["steps"]}
    mode = data.get("mode", "full")
    rounds = data.get("rounds", 3)
    out = []
    p = out.append
    plots_missing = []

    def img(name, alt):
        p(f"![{alt}]({img_rel}/{name})")
        p("")

    v = data["versions"]
    lar = v.get("larder", {})
    p("# larder benchmarks")
    p("")
    p(f"Generated by `bench/report.py` from the run `{data['command']}` started "
      f"{data['started_utc']} (git `{lar.get('describe', '?')}`). Every figure below comes "
      "from that run, except Feast's, which are **published figures measured by Feast on other "
      "hardware** and are marked as such with their source. Do not edit by hand: rerun "
      "`bench/run-all` (or `bench/report.py docs/benchmarks-data.json` to redraw from the "
      "same data).")
    p("")
    if mode != "full":
        p(f"> **This is a `--{mode}` run**: short measurements and fewer points, for "
          "development. Its numbers are noisier than a full run's and are not the published "
          "results.")
        p("")
    others = [x for st in steps.values() for (n, m), ser in st.series.items()
              if m == "other_pct" for x in ser.values()]
    busy = []
    if data.get("idle_pct_before", 100) < 90:
        busy.append(f"the CPUs were {data['idle_pct_before']} % idle before the run")
    if others and statistics.median(others) > 5:
        busy.append(f"other processes took a median {statistics.median(others):.0f} % of the "
                    f"machine during the runs (max {max(others):.0f} %; *other_%* columns)")
    if busy:
        p(f"> **Busy machine**: {'; '.join(busy)}. Numbers measured on a busy machine are "
          "noise; rerun on a quiet one before drawing conclusions.")
        p("")
    if lar.get("modified"):
        p(f"> The tree had modified tracked files when the run started: "
          f"{', '.join(lar['modified'][:8])}{' …' if len(lar['modified']) > 8 else ''}. "
          "The numbers are of that working tree, not exactly of the commit.")
        p("")
    # ---------------------------------------------------------------- setup
    mach = data["machine"]
    p("## Machine, versions, method")
    p("")
    p("| | |")
    p("|---|---|")
    p(f"| machine | {mach['cores']} CPUs ({mach['cpu_model']}), {mach['memory_gib']} GiB, "
      f"{mach['os']}, kernel {mach['kernel']}, virtualization: {mach['virtualization']} |")
    p(f"| load before the run | CPU idle {data['idle_pct_before']} % over 1 s, load average "
      f"{' '.join(data['loadavg_before'])} |")
    p(f"| larder | git {lar.get('commit', '?')} (`{lar.get('describe', '?')}`), "
      f"build `{v['build'].get('dir')}` buildtype {v['build'].get('buildtype')} "
      f"(optimization {v['build'].get('optimization')}, b_ndebug {v['build'].get('b_ndebug')}) |")
    vers = ", ".join(f"{k} {v[k]}" for k in ("gcc", "grpc", "protobuf-c", "hiredis", "redis",
                                              "postgresql", "duckdb (@duckdb/node-api)", "node",
                                              "wrk", "meson", "python", "gnuplot") if k in v)
    p(f"| versions | {vers} |")
    p(f"| rounds | {rounds} per configuration; tables give the median and (min–max) over the "
      "rounds; ratios are per round, then the median |")
    p(f"| wall time | {data.get('elapsed_s', 0) / 60:.1f} min for the whole run |")
    p("")
    p("Client and servers share the same CPUs on this machine, so absolute numbers are a floor "
      "and the in-run ratios are the meaningful part. *server CPU µs/call* is the server "
      "process's user+system time from `/proc/PID/stat` over the run, divided by the calls it "
      "served (warm-up included on both sides). *peak RSS* is the process's `VmHWM`, reset "
      "through `/proc/PID/clear_refs` before each run, read after it. Latencies are "
      "client-side, per call, over the measured window (warm-up excluded).")
    p("")
    p("Commands (from the repository root):")
    p("")
    p("```sh")
    for c in data.get("build_commands", []):
        p(c)
    p(data["command"] + "   # runs, per step:")
    for e in data["steps"]:
        if e.get("command"):
            p(f"  {e['command']}")
    p("```")
    p("")
    p("| step | status | started (UTC) | time | CPU idle before |")
    p("|---|---|---|---|---|")
    for e in data["steps"]:
        st = e["status"] + (f": {e['why']}" if e.get("why") else "")
        p(f"| {e['name']} | {st} | {e.get('started_utc', '-')} | "
          f"{str(round(e['elapsed_s'])) + ' s' if 'elapsed_s' in e else '-'} | "
          f"{str(e['idle_pct_before']) + ' %' if 'idle_pct_before' in e else '-'} |")
    p("")

    # ---------------------------------------------------------------- headlines
    heads = headlines(steps)
    if heads:
        p("## Headlines")
        p("")
        p("Medians of this run, (min–max) over the rounds; each ratio is larder ÷ its "
          "reference in the same round. Details and every other case below.")
        p("")
        for h in heads:
            p(f"- {h}")
        p("")

    # ---------------------------------------------------------------- per area
    growth_inputs = {}
    for e in data["steps"]:
        st = steps[e["name"]]
        p(f"## {e['area']}")
        p("")
        p(STEP_TEXT.get(e["name"], ""))
        p("")
        if e["status"] != "ok":
            p(f"**Not in this run** ({e['status']}{': ' + e['why'] if e.get('why') else ''}).")
            if e["status"] == "failed" and e.get("log_tail"):
                p("")
                p("End of its log:")
                p("")
                p("```")
                out.extend(e["log_tail"])
                p("```")
            p("")
            continue
        p(f"Command: `{e['command']}` ({e.get('elapsed_s', 0):.0f} s).")
        meta = {k: st.meta[k] for k in st.meta if k not in ("command", "rounds")}
        if meta:
            p(f"Run details: {fmt_kv(meta)}.")
        p("")
        if e["name"] == "online":
            out.extend(area_tables(st))
            rows_sw, feat_sw = online_sweep(st, "rows"), online_sweep(st, "features")
            growth_inputs["online"] = (st, rows_sw, feat_sw)
            note = ("larder: this machine, median of the rounds, bars min-max. Feast: "
                    "published figures on other hardware (AWS c5.4xlarge), see the text.")
            ser = []
            for proto, (conc, pts) in sorted(rows_sw.items()):
                ser.append({"title": f"larder {proto}, {conc} in flight (measured)",
                            "points": [q[:4] for q in pts], "style": "ours"})
            for n, ys in FEAST_ROWS.items():
                ser.append({"title": n + " (published, other hardware)",
                            "points": list(zip(FEAST_ROWS_X, ys)), "style": "published"})
            if rows_sw and plot(os.path.join(args.img, "online_p99_rows.png"),
                                "Online p99 latency vs entity rows per request (50 features)",
                                "entity rows per request", "p99 latency (ms, log scale)", ser,
                                logy=True, note=note, xrange=(0, 105)):
                p("### p99 against batch size")
                p("")
                img("online_p99_rows.png", "online p99 vs rows per request")
                p(f"Dashed lines: {FEAST_SRC}. They are not a ratio.")
                p("")
            elif rows_sw:
                plots_missing.append("online_p99_rows.png")
            ser = []
            for proto, (conc, pts) in sorted(feat_sw.items()):
                ser.append({"title": f"larder {proto}, {conc} in flight (measured)",
                            "points": [q[:4] for q in pts], "style": "ours"})
            for n, ys in FEAST_FEAT.items():
                ser.append({"title": n + " (published, other hardware)",
                            "points": list(zip(FEAST_FEAT_X, ys)), "style": "published"})
            if feat_sw and plot(os.path.join(args.img, "online_p99_features.png"),
                                "Online p99 latency vs features per request (1 entity row)",
                                "features per request", "p99 latency (ms, log scale)", ser,
                                logy=True, note=note, xrange=(40, 260)):
                p("### p99 against feature count")
                p("")
                img("online_p99_features.png", "online p99 vs features per request")
                p(f"Dashed lines: {FEAST_SRC}; Feast publishes no Java curve for this sweep. "
                  "They are not a ratio.")
                p("")
            elif feat_sw:
                plots_missing.append("online_p99_features.png")
        elif e["name"] == "registry":
            out.extend(area_tables(st))
            growth_inputs["registry"] = st
        elif e["name"] == "offline":
            out.extend(area_tables(st))
            pit = pit_points(st)
            growth_inputs["offline"] = pit
            ser = []
            for system, label in PIT_SYSTEMS.items():
                pts = [(rows, *d["time_s"]) for rows, d in sorted(pit.get(system, {}).items())
                       if d.get("time_s")]
                if pts:
                    ser.append({"title": label + " (measured, same run)", "points": pts,
                                "style": "ours"})
            if ser and plot(os.path.join(args.img, "pit_join_time.png"),
                            "Point-in-time join time vs feature rows", "feature rows (log scale)",
                            "wall time (s, log scale)", ser, logx=True, logy=True,
                            note="All series measured in the same run on this machine; "
                                 "median of the rounds, bars min-max."):
                img("pit_join_time.png", "PIT join time vs feature rows")
            elif ser:
                plots_missing.append("pit_join_time.png")
            else:
                p("*No point-in-time join records with a size found in this step's output; no "
                  "plot.*")
                p("")
            ser = []
            for system, label in PIT_SYSTEMS.items():
                pts = [(rows, *(v / 1024 for v in d["rss_kib"]))
                       for rows, d in sorted(pit.get(system, {}).items()) if d.get("rss_kib")]
                if pts:
                    ser.append({"title": label.split(" (")[0] + " peak RSS (measured)",
                                "points": pts, "style": "ours"})
            if ser and plot(os.path.join(args.img, "pit_join_rss.png"),
                            "Peak memory of the point-in-time join vs feature rows",
                            "feature rows (log scale)", "peak RSS (MiB, log scale)", ser,
                            logx=True, logy=True,
                            note="Measured in this run; median of the rounds, bars min-max."):
                img("pit_join_rss.png", "PIT join peak RSS vs feature rows")
            elif ser:
                plots_missing.append("pit_join_rss.png")
        else:
            out.extend(area_tables(st))
        if st.published:
            p("Published figures the script prints for orientation (**other hardware, not "
              "measured here, not a ratio**):")
            p("")
            p("| figure | value | source |")
            p("|---|---|---|")
            for r in st.published:
                p(f"| {r['name']} {r['metric']} | {r['value']:g} {r.get('unit') or ''} | "
                  f"{r.get('source', '?')} |")
            p("")

    # ---------------------------------------------------------------- growth
    p("## How cost grows")
    p("")
    p("The sentences marked *measured* are computed by `bench/report.py` from this run's "
      "medians (least-squares line, log–log slope, and whether the largest point follows the "
      "line through the lower half of the range); the paragraphs marked *why* are written by "
      "hand and say what the design predicts, not what was measured.")
    p("")
    p("### Online: entity rows and features per request")
    p("")
    if "online" in growth_inputs:
        st, rows_sw, feat_sw = growth_inputs["online"]
        for proto, (conc, pts) in sorted(rows_sw.items()):
            xs = [q[0] for q in pts]
            p(f"- *measured*, {proto}, {conc} in flight, 50 features: " + describe_growth(
                "p99", xs, [q[1] for q in pts], "rows", "ms", "row"))
            rps = [(q[0], q[4]) for q in pts if q[4]]
            if len(rps) >= 2:
                p(f"  calls/s goes from {rps[0][1]:,.0f} at {at(rps[0][0], 'rows')} to "
                  f"{rps[-1][1]:,.0f} at {rps[-1][0]} rows, i.e. {rps[0][1] * rps[0][0]:,.0f} → "
                  f"{rps[-1][1] * rps[-1][0]:,.0f} entity rows/s.")
        for proto, (conc, pts) in sorted(feat_sw.items()):
            xs = [q[0] for q in pts]
            p(f"- *measured*, {proto}, {conc} in flight, 1 row: " + describe_growth(
                "p99", xs, [q[1] for q in pts], "features", "ms", "feature"))
            rps = [(q[0], q[4]) for q in pts if q[4]]
            if len(rps) >= 2:
                p(f"  calls/s goes from {rps[0][1]:,.0f} at {rps[0][0]} features to "
                  f"{rps[-1][1]:,.0f} at {rps[-1][0]}.")
            hm = [(q[0], st.med(q[5], "hmget_us"), st.med(q[5], "hmget_per_call"))
                  for q in pts]
            hm = [h for h in hm if h[1] is not None and h[2] is not None]
            if len(hm) >= 2:
                a, b = hm[0], hm[-1]
                p(f"  Inside Redis (INFO commandstats): {a[2]:.3g} HMGET of {sig(a[1])} µs per "
                  f"call at {a[0]} features, {b[2]:.3g} of {sig(b[1])} µs at {b[0]}: "
                  f"{sig(a[1] * a[2])} → {sig(b[1] * b[2])} µs of Redis time per call "
                  f"(×{b[1] * b[2] / (a[1] * a[2]):.1f} for ×{num(b[0] / a[0])} the features).")
        if not rows_sw and not feat_sw:
            p("No sweep points in this run (online_bench.py without --sweep).")
        p("")
        p("*Why.* A call has a fixed part (HTTP/2 or HTTP/1.1 framing, request parsing, the "
          "registry snapshot lookup, one round trip to Redis) and a part that grows with the "
          "entity rows and the features: the Redis reads for all rows are sent as one pipeline "
          "of HMGETs (the table's *HMGET/call* column shows how many), and every value is "
          "decoded and re-encoded into the response. So latency should be a fixed cost plus a "
          "cost per row and per feature, i.e. linear, as long as nothing saturates. What can "
          "bend the curve upwards is Redis's side of the feature sweep: with the compiled-in "
          "`hash-max-listpack-entries` (512) an entity's 275-field hash is a listpack, which "
          "HMGET searches linearly for each field asked for, so the time inside Redis grows "
          "with the fields requested times the fields that have to be skipped to reach them "
          "(bench/README.md, online_bench.py notes; `--redis-args "
          "'--hash-max-listpack-entries 128'` measures hashtable-encoded hashes). Larger "
          "responses also cross more TCP segments and allocator size classes. At 1 call in "
          "flight, calls/s is roughly the inverse of the mean latency.")
        p("")
    else:
        p("The online step did not run.")
        p("")

    p("### Offline: point-in-time join from 10k to 10M feature rows")
    p("")
    pit = growth_inputs.get("offline")
    if pit:
        for system, label in PIT_SYSTEMS.items():
            d = pit.get(system, {})
            tp = [(r, x["time_s"][0]) for r, x in sorted(d.items()) if x.get("time_s")]
            mp = [(r, x["rss_kib"][0] / 1024) for r, x in sorted(d.items()) if x.get("rss_kib")]
            if tp:
                p(f"- *measured*, {label}: " + describe_growth(
                    "join time", [t[0] for t in tp], [t[1] for t in tp], "feature rows", "s",
                    "feature row"))
            if mp:
                p(f"- *measured*, {label}: " + describe_growth(
                    "peak RSS", [t[0] for t in mp], [t[1] for t in mp], "feature rows", "MiB",
                    "feature row"))
        if "larder" in pit and "duckdb" in pit:
            common = sorted(set(pit["larder"]) & set(pit["duckdb"]))
            rat = [(r, pit["larder"][r]["time_s"][0] / pit["duckdb"][r]["time_s"][0])
                   for r in common
                   if pit["larder"][r].get("time_s") and pit["duckdb"][r].get("time_s")]
            if rat:
                p("- *measured*, larder ÷ DuckDB (with Feast's rules) join time, medians: "
                  + ", ".join(f"{ratio:.2f} at {r:,} feature rows" for r, ratio in rat) + ".")
        p("")
        p("*Why.* A sort-merge as-of join sorts the feature rows by key and time and then "
          "walks both sides once, so its time should grow as n·log n (close to linear over "
          "this range) once fixed costs (process start, Flight round trips, reading the files) "
          "stop dominating at the small end. Memory holds the sorted feature rows of a "
          "partition plus output batches in flight, so it should grow linearly with the input "
          "unless the engine spills or streams by partition.")
    else:
        p("No point-in-time join records in this run (the offline step did not run, or its "
          "records carry no input size).")
    p("")

    p("### Registry: ListFeatureViews from 10 to 10,000 feature views")
    p("")
    st = growth_inputs.get("registry")
    pts = []
    if st:
        for n in st.order:
            pr = st.params(n)
            if pr.get("sweep") and "fvs" in pr and st.get(n, "p99"):
                m50, m99 = mmm(st.get(n, "p50").values()), mmm(st.get(n, "p99").values())
                pts.append((pr["fvs"], m50, m99, st.med(n, "resp_bytes"), n))
        pts.sort()
    if pts:
        ref = st.reference(pts[0][4])
        refp99 = st.med(ref, "p99") if ref else None
        p("- *measured*: " + describe_growth("p50", [q[0] for q in pts],
                                           [q[1][0] / 1000 for q in pts], "feature views",
                                           "ms", "feature view"))
        p("- *measured*: " + describe_growth("p99", [q[0] for q in pts],
                                           [q[2][0] / 1000 for q in pts], "feature views",
                                           "ms", "feature view"))
        rb = [(q[0], q[3]) for q in pts if q[3]]
        if rb:
            p(f"- *measured*: response size {sig(rb[0][1] / 1e3)} kB at {rb[0][0]:,} views, "
              f"{sig(rb[-1][1] / 1e3)} kB at {rb[-1][0]:,} "
              f"({rb[-1][1] / rb[-1][0]:.0f} bytes per view).")
        ser = [{"title": "ListFeatureViews p50 (measured)",
                "points": [(q[0], q[1][0] / 1000, q[1][1] / 1000, q[1][2] / 1000) for q in pts],
                "style": "ours"},
               {"title": "ListFeatureViews p99 (measured)",
                "points": [(q[0], q[2][0] / 1000, q[2][1] / 1000, q[2][2] / 1000) for q in pts],
                "style": "ours"}]
        if refp99:
            ser.append({"title": "health Check p99, same server (reference)",
                        "points": [(pts[0][0], refp99 / 1000), (pts[-1][0], refp99 / 1000)],
                        "style": "ref"})
        p("")
        if plot(os.path.join(args.img, "registry_list.png"),
                "Registry ListFeatureViews latency vs registry size (1 in flight)",
                "feature views in the project (log scale)", "latency (ms, log scale)", ser,
                logx=True, logy=True, note="Measured in this run; median of the rounds, bars "
                                           "min-max. Each view has 10 features."):
            img("registry_list.png", "ListFeatureViews latency vs feature views")
        else:
            plots_missing.append("registry_list.png")
        p("*Why.* ListFeatureViews returns every view of the project, ~195 bytes each, so a "
          "call costs a fixed part (dominant at 10 views) plus moving the response: one copy "
          "of it on the server (a plain List is serialized once per registry snapshot and "
          "kept), the kernel's loopback copy and the client's receive, each proportional to "
          "the bytes. No flow-control round trips: the server writes the whole response in "
          "one sendmsg. Before the memo, every call walked each stored view, which stopped "
          "fitting in cache above ~1,000 views and made 10,000 views ×10–50 slower than "
          "1,000 (registry_server/README.md, \"Scaling\").")
    else:
        p("No registry sweep in this run (registry_bench.py without --sweep).")
    p("")

    p("## Published figures of other systems")
    p("")
    p(f"Drawn beside ours in the plots above, never divided by ours. {FEAST_SRC}. Conditions "
      "and the full tables: `/work/shared/reference/performance-anchors.md` §1 "
      "(Feast's own serving benchmarks).")
    p("")
    p("| Feast p99 ms, 50 features | " + " | ".join(f"{x} row{'s' * (x > 1)}"
                                                   for x in FEAST_ROWS_X) + " |")
    p("|---|" + "---|" * len(FEAST_ROWS_X))
    for n, ys in FEAST_ROWS.items():
        p(f"| {n} (published) | " + " | ".join(f"{y:g}" for y in ys) + " |")
    p("")
    p("| Feast p99 ms, 1 row | " + " | ".join(f"{x} features" for x in FEAST_FEAT_X) + " |")
    p("|---|" + "---|" * len(FEAST_FEAT_X))
    for n, ys in FEAST_FEAT.items():
        p(f"| {n} (published) | " + " | ".join(f"{y:g}" for y in ys) + " |")
    p("")
    if plots_missing:
        p(f"*Plots not drawn (gnuplot missing or failed): {', '.join(plots_missing)}.*")
        p("")
    text = "\n".join(out).rstrip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    with open(args.md, "w") as f:
        f.write(text)
    print(f"report: wrote {args.md}", file=sys.stderr)


if __name__ == "__main__":
    main()
