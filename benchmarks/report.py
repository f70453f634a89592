"""Turn a results JSON of run.py into docs/benchmarks.md (tables, targets met or not) and docs/benchmarks.png.

.venv/bin/python benchmarks/report.py [benchmarks/results/latest.json]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def med(values: Sequence[float]) -> float:
    clean = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio_fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


@dataclass
class Row:
    figure: str
    python: str
    node: str
    ratio: float
    target: str
    met: bool | None
    note: str = ""


def _status(block: dict[str, Any], code: str, key: str) -> float:
    entry = block.get("status", {}).get(code)
    return float(entry[key]) if entry else float("nan")


NAN = float("nan")


def _cpu(block: dict[str, Any]) -> float:
    """Server CPU µs per request of one measured run (run.py's ``with_server_cpu``); NaN where not recorded."""
    return float(block.get("cpu_us_per_req", NAN))


def _paired(values: Sequence[float], against: Sequence[float]) -> float:
    """The median over rounds of value / against, paired within each round."""
    return med([v / a if a else NAN for v, a in zip(values, against, strict=True)])


def compute(r: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds and paired ratios for every figure the report shows."""
    out: dict[str, Any] = {}
    w0 = r["wrk_0ms"]
    out["0ms.contenders"] = [who for who in ("python", "node", "python_before") if who in w0[0]]
    for c in ("1", "16", "64"):
        for metric in ("rps", "p50_ms", "p99_ms"):
            node = [row["node"][c][metric] for row in w0]
            py = [row["python"][c][metric] for row in w0]
            out[f"0ms.{c}.{metric}"] = (med(py), med(node), _paired(py, node))
        node = [_cpu(row["node"][c]) for row in w0]
        py = [_cpu(row["python"][c]) for row in w0]
        out[f"0ms.{c}.cpu"] = (med(py), med(node), _paired(py, node))
        for who in out["0ms.contenders"]:
            for metric in ("rps", "p50_ms", "p99_ms"):
                out[f"0ms.{who}.{c}.{metric}"] = med([row[who][c][metric] for row in w0])
            out[f"0ms.{who}.{c}.cpu"] = med([_cpu(row[who][c]) for row in w0])
            out[f"0ms.{who}.{c}.cpu_vs_node"] = _paired([_cpu(row[who][c]) for row in w0], node)
    if "python_before" in w0[0]:  # run.py --baseline: the earlier build, same rounds
        for c in ("1", "16", "64"):
            for metric in ("rps", "cpu_us_per_req", "p99_ms"):
                py = [row["python"][c].get(metric, NAN) for row in w0]
                before = [row["python_before"][c].get(metric, NAN) for row in w0]
                out[f"0ms.{c}.{metric}.before"] = (med(py), med(before), _paired(py, before))
        out["rss.before"] = med([row["rss_kib"]["python_before"] / 1024 for row in w0])
        rss_py = [row["rss_kib"]["python"] / 1024 for row in w0]
        rss_before = [row["rss_kib"]["python_before"] / 1024 for row in w0]
        out["rss.vs_before"] = (med(rss_py), med(rss_before), _paired(rss_py, rss_before))
        if "pss_kib" in w0[0]:
            out["pss.before"] = med([row["pss_kib"]["python_before"] / 1024 for row in w0])
            pss_py = [row["pss_kib"]["python"] / 1024 for row in w0]
            pss_before = [row["pss_kib"]["python_before"] / 1024 for row in w0]
            out["pss.vs_before"] = (med(pss_py), med(pss_before), _paired(pss_py, pss_before))
    if "instructions" in r:
        counted = r["instructions"]
        out["instructions"] = (counted["now"], counted["before"], counted["now"] / counted["before"])
        out["instructions.requests"] = counted["requests"]
    rss_py = [row["rss_kib"]["python"] / 1024 for row in w0]
    rss_node = [row["rss_kib"]["node"] / 1024 for row in w0]
    out["rss"] = (med(rss_py), med(rss_node), _paired(rss_py, rss_node))
    if "pss_kib" in w0[0]:  # shared pages counted once (when serve runs as several processes they share pages)
        pss_py = [row["pss_kib"]["python"] / 1024 for row in w0]
        pss_node = [row["pss_kib"]["node"] / 1024 for row in w0]
        out["pss"] = (med(pss_py), med(pss_node), _paired(pss_py, pss_node))

    floors = r["floors"]
    out["floor20"] = floors["20"]["median_ms"]
    out["floor50"] = floors["50"]["median_ms"]
    l20 = r["lat20"]
    for c in ("1", "16", "64"):
        for who in ("node", "python", "python_pool"):
            for metric in ("rps", "p50_ms", "p99_ms"):
                out[f"20ms.wrk.{who}.{c}.{metric}"] = med([row["wrk"][who][c][metric] for row in l20])
            out[f"20ms.wrk.{who}.{c}.cpu"] = med([_cpu(row["wrk"][who][c]) for row in l20])
    for c in ("1", "16"):
        for who in ("node", "python", "python_pool"):
            for metric in ("p50_ms", "p99_ms"):
                out[f"20ms.ol.{who}.{c}.{metric}"] = med(
                    [_status(row["open_loop"][who][c], "200", metric) for row in l20]
                )
            out[f"20ms.ol.{who}.{c}.cpu"] = med([_cpu(row["open_loop"][who][c]) for row in l20])
            out[f"20ms.ol.{who}.{c}.non200"] = sum(
                sum(v["n"] for k, v in row["open_loop"][who][c]["status"].items() if k != "200") for row in l20
            )
        pool = [_status(row["open_loop"]["python_pool"][c], "200", "p50_ms") for row in l20]
        node = [_status(row["open_loop"]["node"][c], "200", "p50_ms") for row in l20]
        out[f"20ms.ol.pool_ratio.{c}"] = med([p / n for p, n in zip(pool, node, strict=True)])
        nopool = [row["wrk"]["python"][c]["p50_ms"] for row in l20]
        out[f"20ms.nopool_floor_ratio.{c}"] = med(nopool) / out["floor20"]

    ip = r["inprocess"]
    for key, pick in (
        ("node", lambda row: row["node"]["sdk"]),
        ("node_raw", lambda row: row["node"]["raw"]),
        ("sync", lambda row: row["python"]["sync"]),
        ("sync_floor", lambda row: row["python"]["sync_floor"]),
        ("async", lambda row: row["python"]["async"]),
        ("async_floor", lambda row: row["python"]["async_floor"]),
    ):
        out[f"ip.{key}"] = med([pick(row)["median_us"] for row in ip])
        out[f"ip.{key}.mean"] = med([pick(row)["mean_us"] for row in ip])
        out[f"ip.{key}.p99"] = med([pick(row)["p99_us"] for row in ip])
    for key in ("sync", "async"):
        out[f"ip.{key}.ratio"] = med([row["python"][key]["median_us"] / row["node"]["sdk"]["median_us"] for row in ip])

    cold = r["cold_start"]
    pairs = list(zip(cold["python"], cold["node"], strict=False))
    out["cold"] = (med(cold["python"]) * 1000, med(cold["node"]) * 1000, med([p / n for p, n in pairs]))
    out["import"] = r["import_time"]["cumulative_ms"]

    sl = r.get("serverless")
    if sl:
        for who in ("python", "node", "python_bare", "node_bare"):
            for key in ("cold_ms", "warm_median_us", "peak_rss_kib"):
                out[f"sl.{who}.{key}"] = med([float(x[key]) for x in sl[who]])
        for py, node in (("python", "node"), ("python_bare", "node_bare")):
            for key in ("cold_ms", "warm_median_us", "peak_rss_kib"):
                pairs = zip(sl[py], sl[node], strict=False)
                out[f"sl.{py}.{key}.ratio"] = med([float(a[key]) / float(b[key]) for a, b in pairs])

    rel = r["reliability"]
    out["rel.py.p50"] = med([_status(row["python"], "200", "p50_ms") for row in rel])
    out["rel.py.p99"] = med([_status(row["python"], "200", "p99_ms") for row in rel])
    out["rel.node.p50"] = med([_status(row["node"], "200", "p50_ms") for row in rel])
    out["rel.node.p99"] = med([_status(row["node"], "200", "p99_ms") for row in rel])
    out["rel.429.p50"] = med([_status(row["python_limited"], "429", "p50_ms") for row in rel])
    out["rel.429.p99"] = med([_status(row["python_limited"], "429", "p99_ms") for row in rel])
    out["rel.429.n"] = sum(row["python_limited"]["status"].get("429", {}).get("n", 0) for row in rel)
    out["rel.429.ok"] = sum(row["python_limited"]["status"].get("200", {}).get("n", 0) for row in rel)
    out["rel.py.non200"] = sum(sum(v["n"] for k, v in row["python"]["status"].items() if k != "200") for row in rel)
    for key, who in (("py", "python"), ("node", "node")):
        out[f"rel.{key}.cpu"] = med([_cpu(row[who]) for row in rel])
    out["rel.achieved"] = med([row["python"]["achieved_rate"] for row in rel])
    out["rel.gen_late_p99"] = med([row["python"]["generator_late_p99_ms"] for row in rel])

    variants: dict[str, tuple[float, float]] = {}
    for name in r.get("variants", [{}])[0]:
        variants[name] = (
            med([row[name]["rps"] for row in r["variants"]]),
            med([_cpu(row[name]) for row in r["variants"]]),
        )
    out["variants"] = variants
    out["baseline"] = r.get("baseline", "")
    slow = r.get("slowloris") or []
    if slow:
        out["slowloris"] = {
            "during_max_ms": max(x["healthz_during_max_ms"] for x in slow),
            "closed": min(x["closed"] for x in slow),
            "sockets": slow[0]["sockets"],
            "last_closed_s": max(x["last_closed_after_s"] for x in slow),
            "head_timeout_s": slow[0]["head_timeout_s"],
        }
    return out


# "No worse than today" (issue 22) is judged against the baseline build measured in the same rounds (``make bench``
# passes it: the build the figures below came from). What that run does not measure (the warm pool: the baseline only
# runs in the 0 ms route phase), and every figure of a run without ``--baseline``, is judged against the last full
# ``make bench`` before issue 22's changes: these figures, of that day's docs/benchmarks.md.
TODAY = {
    "date": "2026-12-02",
    "build": "2233f6d",
    "p99_64_ms": 97.3,
    "pss_mib": 37.2,
    "rss_mib": 47.5,
    "pool_p50_ms": {"1": 1.54, "16": 1.55},
}
NO_WORSE = 1.05  # "no worse": within 5 %, the tolerance the earlier before/after targets allowed


def targets(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []

    def add(
        figure: str, py: str, node: str, ratio: float, target: str, ok: Callable[[float], bool], note: str = ""
    ) -> None:
        rows.append(Row(figure, py, node, ratio, target, None if math.isnan(ratio) else ok(ratio), note))

    def no_worse(figure: str, now: float, today: float, ratio: float, digits: int, note: str) -> None:
        add(
            figure, fmt(now, digits), fmt(today, digits), ratio, f"≤ {NO_WORSE:g}x today", lambda x: x <= NO_WORSE, note
        )

    baseline = f.get("baseline", "")
    same_run = f"issue 22; the Node column holds orga-ai at `{baseline}`, measured in the same rounds, paired"
    fixed = f"issue 22; the Node column holds the figure of {TODAY['date']} (`{TODAY['build']}`), another run"

    for c in ("16", "64"):
        py, node, ratio = f[f"0ms.{c}.cpu"]
        add(
            f"Server CPU per route request, {c} conn, upstream 0 ms (µs)",
            fmt(py, 0),
            fmt(node, 0),
            ratio,
            "≤ 0.4x Node",
            lambda x: x <= 0.4,
            "issue 22",
        )
    if "instructions" in f:
        now, before, ratio = f["instructions"]
        add(
            f"Instructions per request on the route (callgrind), against orga-ai at `{baseline}`",
            fmt(now, 0),
            fmt(before, 0),
            ratio,
            f"≤ {NO_WORSE:g}x baseline",
            lambda x: x <= NO_WORSE,
            "counted rather than timed; the Node column holds the baseline build",
        )
    py, node, ratio = f["0ms.64.p99_ms"]
    add("Route p99, 64 conn, upstream 0 ms (ms)", fmt(py), fmt(node), ratio, "≤ 0.5x Node", lambda x: x <= 0.5)
    if "0ms.64.p99_ms.before" in f:
        now, before, ratio = f["0ms.64.p99_ms.before"]
        no_worse("Route p99, 64 conn, upstream 0 ms, against today (ms)", now, before, ratio, 1, same_run)
    else:
        now = f["0ms.64.p99_ms"][0]
        no_worse(
            "Route p99, 64 conn, upstream 0 ms, against today (ms)",
            now,
            TODAY["p99_64_ms"],
            now / TODAY["p99_64_ms"],
            1,
            fixed,
        )
    for c in ("1", "16"):
        py = f[f"20ms.wrk.python.{c}.p50_ms"]
        add(
            f"Route p50, {c} conn, upstream 20 ms, no pool (ms)",
            fmt(py),
            fmt(f[f"20ms.wrk.node.{c}.p50_ms"]),
            f[f"20ms.nopool_floor_ratio.{c}"],
            f"≤ 1.05x floor ({fmt(f['floor20'])} ms)",
            lambda x: x <= 1.05,
            "ratio is against the floor of two sequential upstream calls, not Node",
        )
    for c in ("1", "16"):
        py = f[f"20ms.ol.python_pool.{c}.p50_ms"]
        node = f[f"20ms.ol.node.{c}.p50_ms"]
        ratio = f[f"20ms.ol.pool_ratio.{c}"]
        rows.append(
            Row(
                f"Route p50, {c} conn, upstream 20 ms, warm pool (ms)",
                fmt(py, 2),
                fmt(node),
                ratio,
                "≤ 5 ms and ≤ 0.1x Node",
                None if math.isnan(ratio) else (py <= 5.0 and ratio <= 0.1),
                "open loop",
            )
        )
        today = TODAY["pool_p50_ms"][c]  # type: ignore[index]
        no_worse(
            f"Route p50, {c} conn, upstream 20 ms, warm pool, against today (ms)",
            py,
            today,
            py / today,
            2,
            f"open loop; {fixed}",
        )
    add(
        "In-process get_session_config(), async (µs)",
        fmt(f["ip.async"], 0),
        fmt(f["ip.node"], 0),
        f["ip.async.ratio"],
        "≤ 0.5x Node",
        lambda x: x <= 0.5,
        "issue 22",
    )
    add(
        "In-process get_session_config(), sync (µs)",
        fmt(f["ip.sync"], 0),
        fmt(f["ip.node"], 0),
        f["ip.sync.ratio"],
        "≤ 0.8x Node",
        lambda x: x <= 0.8,
        "issue 22",
    )
    if "pss" in f:
        # RSS summed over serve's processes counts the pages they share once per process, PSS once in all.
        py, node, ratio = f["pss"]
        add(
            "Memory after load, PSS (MiB)",
            fmt(py),
            fmt(node),
            ratio,
            "≤ 0.35x Node",
            lambda x: x <= 0.35,
            f"RSS summed over processes: {fmt(f['rss'][0])} against {fmt(f['rss'][1])}",
        )
        if "pss.vs_before" in f:
            now, before, ratio = f["pss.vs_before"]
            no_worse("Memory after load, PSS, against today (MiB)", now, before, ratio, 1, same_run)
        else:
            no_worse(
                "Memory after load, PSS, against today (MiB)", py, TODAY["pss_mib"], py / TODAY["pss_mib"], 1, fixed
            )
    else:
        py, node, ratio = f["rss"]
        add("RSS after load (MiB)", fmt(py), fmt(node), ratio, "≤ 0.35x Node", lambda x: x <= 0.35)
        if "rss.vs_before" in f:
            now, before, ratio = f["rss.vs_before"]
            no_worse("RSS after load, against today (MiB)", now, before, ratio, 1, same_run)
        else:
            no_worse("RSS after load, against today (MiB)", py, TODAY["rss_mib"], py / TODAY["rss_mib"], 1, fixed)
    py, node, ratio = f["cold"]
    add(
        "`orga-ai serve` spawn to first 200 (ms)",
        fmt(py, 0),
        fmt(node, 0),
        ratio,
        "≤ 1.0x Node",
        lambda x: x <= 1.0,
        "issue 22",
    )
    if "sl.python.cold_ms" in f:
        for key, label, goal, digits in (
            ("cold_ms", "Lambda cold start: spawn, import, first event answered (ms)", 0.8, 0),
            ("warm_median_us", "Lambda warm invocation (µs)", 0.8, 0),
            ("peak_rss_kib", "Lambda peak RSS (MiB)", 0.5, 1),
        ):
            scale = 1024 if key == "peak_rss_kib" else 1
            add(
                label,
                fmt(f[f"sl.python.{key}"] / scale, digits),
                fmt(f[f"sl.node.{key}"] / scale, digits),
                f[f"sl.python.{key}.ratio"],
                f"≤ {goal}x Node",
                lambda x, goal=goal: x <= goal,
                "issues 12 and 22" if key == "cold_ms" else "issue 12",
            )
    slow = f.get("slowloris")
    if slow:
        rows.append(
            Row(
                f"/healthz with {slow['sockets']:,} half-sent heads open, slowest of all rounds (ms)",
                fmt(slow["during_max_ms"], 1),
                "-",
                float("nan"),
                "≤ 100 ms",
                slow["during_max_ms"] <= 100.0,
                "issue 11",
            )
        )
        rows.append(
            Row(
                "Half-sent heads closed by serve, last one after (s)",
                f"{slow['closed']:,} of {slow['sockets']:,}; {fmt(slow['last_closed_s'], 2)}",
                "-",
                float("nan"),
                f"all, ≤ head timeout + 1 s ({slow['head_timeout_s'] + 1:g} s)",
                slow["closed"] == slow["sockets"] and slow["last_closed_s"] <= slow["head_timeout_s"] + 1,
                "issue 11",
            )
        )
    imp = f["import"]
    rows.append(
        Row("`import orga_ai` (ms, -X importtime cumulative)", fmt(imp, 2), "-", float("nan"), "≤ 20 ms", imp <= 20.0)
    )
    return rows


def today_line(f: dict[str, Any]) -> str:
    """What the "against today" rows of the targets table compare with."""
    fixed = f"the figures of the full run of {TODAY['date']} (`{TODAY['build']}`)"
    if f.get("baseline"):
        return (
            f"`orga-ai serve` as built at `{f['baseline']}`, measured in the same rounds (p99 and memory; paired"
            f" ratios), and, for the warm pool, which only the current build runs, {fixed}"
        )
    return fixed + " (this run had no `--baseline` build to measure beside it)"


def noise_line(r: dict[str, Any]) -> str:
    noise = r.get("noise") or {}
    whole = noise.get("whole run")
    if not whole:
        return "- **Noise**: not recorded"
    phases = ", ".join(f"{k} {v['foreign_share']:.0%}" for k, v in noise.items() if k != "whole run")
    verdict = "quiet" if whole["foreign_share"] < 0.05 else "**shared: figures are perturbed**"
    return (
        f"- **Noise**: processes outside the benchmark used {whole['foreign_share']:.0%} of the cores over the run"
        f" ({verdict}); per phase: {phases}"
    )


def markdown(r: dict[str, Any], f: dict[str, Any]) -> str:
    v, m, s = r["versions"], r["machine"], r["settings"]
    rows = targets(f)
    judged = [row for row in rows if row.met is not None]
    met = sum(1 for row in judged if row.met)
    lines = [
        "# Benchmarks: orga-ai (Python) against @orga-ai/node",
        "",
        "Generated by `make bench` (`benchmarks/run.py`, then `benchmarks/report.py`) from one run;"
        " do not edit by hand.",
        "",
        f"- **Date**: {r['started'][:16].replace('T', ' ')}; run took {r.get('elapsed_s', 0) / 60:.1f} min"
        f"{' (QUICK smoke run: 1 round, short phases, not for quoting)' if r['quick'] else ''}",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}; proxies, upstream, wrk and"
        " load generator all share these cores",
        f"- **Python side**: {v['python contender']}, orga-ai {v['orga-ai']} ({v['orga-ai git']}),"
        f" Python {v['python']},"
        f" uvicorn {v.get('uvicorn', '-')} + httptools {v.get('httptools', '-')} (uvloop {v['uvloop']}),"
        f" starlette {v['starlette']},"
        f" aiohttp {v['aiohttp']}, httpx {v['httpx']}, limits {v['limits']}",
        f"- **Node side**: Node {v['node']}, @orga-ai/node {v['@orga-ai/node']}, express {v['express']}",
        f"- **Method**: {r['rounds']} rounds ({len(r['wrk_0ms'])} in the 0 ms route phase), contenders interleaved"
        " and their order flipped each round; medians over"
        f" rounds, ratios paired within a round (Python / Node) then the median. `{v['wrk']}` `-t1 -c{{1,16,64}}"
        f" -d{s['wrk_duration_s']:g}s --latency` after a {s['warmup_s']:g} s warm-up; each server a fresh process per"
        " round.",
        noise_line(r),
        "",
        f"## Targets (issues 5, 11, 12 and 22): {met} of {len(judged)} met",
        "",
        "Route throughput is judged by the server's CPU time per request, not req/s: on two shared cores req/s is"
        " capped by wrk and the upstream stand-in running beside the server, while CPU per request is what the"
        ' server\'s own code costs. "Today" is ' + today_line(f) + ".",
        "",
        "| Figure | orga-ai | Node (or as noted) | Ratio | Target | Met |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for row in rows:
        mark = "-" if row.met is None else ("✅ met" if row.met else "❌ not met")
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.figure}{note} | {row.python} | {row.node} | {ratio_fmt(row.ratio)} | {row.target} | {mark} |"
        )

    lines += [
        "",
        "## Reliability figures (fixed rate, open loop)",
        "",
        f"`benchmarks/load.py` sends {s['reliability_rate']:g} req/s for {s['reliability_duration_s']:g} s per round"
        f" (achieved {fmt(f['rel.achieved'])} req/s; generator's own launch lateness p99"
        f" {fmt(f['rel.gen_late_p99'], 1)}"
        " ms), upstream at 50 ms per call. Added latency = route latency - the floor of two sequential upstream"
        f" calls measured alone ({fmt(f['floor50'])} ms).",
        "",
        "| Figure | orga-ai serve | Node |",
        "|---|---:|---:|",
        f"| Route p50 / p99 (ms) | {fmt(f['rel.py.p50'])} / {fmt(f['rel.py.p99'])} |"
        f" {fmt(f['rel.node.p50'])} / {fmt(f['rel.node.p99'])} |",
        f"| **p99 added latency of the proxy** (ms) | **{fmt(f['rel.py.p99'] - f['floor50'])}** |"
        f" {fmt(f['rel.node.p99'] - f['floor50'])} |",
        f"| p50 added latency (ms) | {fmt(f['rel.py.p50'] - f['floor50'])} | {fmt(f['rel.node.p50'] - f['floor50'])} |",
        f"| Server CPU per request (µs) | {fmt(f['rel.py.cpu'], 0)} | {fmt(f['rel.node.cpu'], 0)} |",
        f"| **p99 latency of a 429** (principal over `--rate-limit {s['reject_rate_limit']}`; p50 in brackets) (ms) |"
        f" **{fmt(f['rel.429.p99'], 2)}** ({fmt(f['rel.429.p50'], 2)}) | no rate limiting |",
        "",
        f"Non-200 answers in the unlimited run: {f['rel.py.non200']}. In the limited run: {f['rel.429.n']} x 429 and"
        f" {f['rel.429.ok']} x 200 over all rounds.",
        "",
        *slowloris_lines(r),
        "## Proxy route, upstream 0 ms (wrk, closed loop)",
        "",
        "Server CPU per request is the server's own CPU time over the run (its process and any workers, every"
        " thread; not wrk's, not the upstream's) divided by the requests served: unlike req/s it barely moves when"
        " other processes compete for the cores. CPU / Node is paired within each round, then the median.",
        "",
        "| Connections | Contender | req/s | server CPU per request (µs) | CPU / Node | p50 (ms) | p99 (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "node": "Node",
        "python": "orga-ai serve",
        "python_before": f"orga-ai serve at `{f['baseline']}` (baseline)",
    }
    for c in ("1", "16", "64"):
        for who in ("node", "python", "python_before"):
            if who not in f["0ms.contenders"]:
                continue
            lines.append(
                f"| {c} | {labels[who]} | {fmt(f[f'0ms.{who}.{c}.rps'], 0)} | {fmt(f[f'0ms.{who}.{c}.cpu'], 0)} |"
                f" {'-' if who == 'node' else ratio_fmt(f[f'0ms.{who}.{c}.cpu_vs_node'])} |"
                f" {fmt(f[f'0ms.{who}.{c}.p50_ms'], 2)} | {fmt(f[f'0ms.{who}.{c}.p99_ms'], 2)} |"
            )
    lines += [
        "",
        "req/s orga-ai / Node, paired: "
        + ", ".join(f"{ratio_fmt(f[f'0ms.{c}.rps'][2])} at {c}" for c in ("1", "16", "64"))
        + ".",
    ]
    if "0ms.1.rps.before" in f:
        lines += [
            "",
            f"Against the baseline build (`orga-ai serve` as built at `{f['baseline']}`, in the same rounds), now /"
            " baseline, paired: CPU per request "
            + ", ".join(f"{ratio_fmt(f[f'0ms.{c}.cpu_us_per_req.before'][2])} at {c}" for c in ("1", "16", "64"))
            + "; req/s "
            + ", ".join(f"{ratio_fmt(f[f'0ms.{c}.rps.before'][2])} at {c}" for c in ("1", "16", "64"))
            + f"; p99 at 64 connections {ratio_fmt(f['0ms.64.p99_ms.before'][2])}.",
            "",
        ]
        memory = f"RSS after load: now {fmt(f['rss'][0])} MiB, baseline {fmt(f['rss.before'])} MiB"
        if "pss.before" in f:
            memory += f"; PSS now {fmt(f['pss'][0])} MiB, baseline {fmt(f['pss.before'])} MiB"
        lines.append(memory + ".")
        if "instructions" in f:
            now, before, ratio = f["instructions"]
            lines += [
                "",
                "Instructions per request on the route, counted by callgrind over"
                f" {f['instructions.requests']:,} sequential requests on one connection (benchmarks/instructions.py;"
                " the same count on a busy machine): now"
                f" {fmt(now, 0)}, baseline {fmt(before, 0)}, {ratio_fmt(ratio)}.",
            ]
    if "pss" in f:
        lines += [
            "",
            f"Memory after load, PSS (each page shared by n processes counted 1/n): orga-ai {fmt(f['pss'][0])} MiB,"
            f" Node {fmt(f['pss'][1])} MiB ({ratio_fmt(f['pss'][2])}). The RSS figures above are summed over"
            " serve's processes, so any pages they share count once per process.",
        ]
    up = r["upstream"]
    lines += [
        "",
        f"The upstream stand-in alone (`benchmarks/upstream.js`, 0 ms, wrk -c64): **{fmt(up['ice_config']['rps'], 0)}"
        f" req/s** on ice-config and **{fmt(up['client_secrets']['rps'], 0)} req/s** on client-secrets, against the"
        f" at most {fmt(2 * max(f['0ms.64.rps'][0], f['0ms.64.rps'][1]), 0)} upstream req/s the fastest proxy"
        " asks of it"
        " (two per route call): it is not the bottleneck, though it does take a share of the same two cores.",
        "",
        "### What serve's layers cost (16 connections, upstream 0 ms)",
        "",
        "| Python variant | req/s | server CPU per request (µs) |",
        "|---|---:|---:|",
    ]
    for name, (rps, cpu) in f["variants"].items():
        lines.append(f"| {name} | {fmt(rps, 0)} | {fmt(cpu, 0)} |")
    lines += [
        "",
        "## Proxy route, upstream 20 ms",
        "",
        f"Floor of two sequential upstream calls (aiohttp, kept-alive, measured alone): {fmt(f['floor20'], 2)} ms.",
        "",
        "Closed loop (wrk). The warm pool cannot help here: wrk asks faster than a 20 ms upstream can refill it, so"
        " these pool rows show the pool drained (kept for honesty).",
        "",
        "| Connections | Contender | req/s | server CPU per request (µs) | p50 (ms) | p99 (ms) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    names = {"node": "Node", "python": "orga-ai serve", "python_pool": f"orga-ai serve --prefetch {s['prefetch']}"}
    for c in ("1", "16", "64"):
        for who, label in names.items():
            lines.append(
                f"| {c} | {label} | {fmt(f[f'20ms.wrk.{who}.{c}.rps'], 0)} | {fmt(f[f'20ms.wrk.{who}.{c}.cpu'], 0)} |"
                f" {fmt(f[f'20ms.wrk.{who}.{c}.p50_ms'], 2)} |"
                f" {fmt(f[f'20ms.wrk.{who}.{c}.p99_ms'], 2)} |"
            )
    lines += [
        "",
        f"Open loop (`benchmarks/load.py`, {s['pool_rate']:g} req/s for {s['open_loop_duration_s']:g} s per round, a"
        " rate the pool refills comfortably: its default ceiling is 20 mints/s), client capped at 1 or 16 connections."
        " The pool's CPU per request includes the background mint that refills it after each request:",
        "",
        "| Connections | Contender | p50 (ms) | p99 (ms) | non-200 | server CPU per request (µs) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in ("1", "16"):
        for who, label in names.items():
            lines.append(
                f"| {c} | {label} | {fmt(f[f'20ms.ol.{who}.{c}.p50_ms'], 2)} |"
                f" {fmt(f[f'20ms.ol.{who}.{c}.p99_ms'], 2)} |"
                f" {f[f'20ms.ol.{who}.{c}.non200']} | {fmt(f[f'20ms.ol.{who}.{c}.cpu'], 0)} |"
            )
    lines += [
        "",
        f"## In-process, upstream 0 ms ({s['inprocess_calls']} sequential calls per loop, each timed)",
        "",
        "| Loop | median (µs) | mean (µs) | p99 (µs) |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("node", "@orga-ai/node `getSessionConfig()`"),
        ("node_raw", "Node: two raw `fetch()` calls"),
        ("async", "`AsyncOrgaAI.get_session_config()` (its default transport: asyncio + httptools, uvloop)"),
        ("async_floor", "aiohttp: two raw requests (floor)"),
        ("sync", "`OrgaAI.get_session_config()` (http.client)"),
        ("sync_floor", "http.client: two raw requests on one connection (floor)"),
    ):
        lines.append(
            f"| {label} | {fmt(f[f'ip.{key}'], 0)} | {fmt(f[f'ip.{key}.mean'], 0)} | {fmt(f[f'ip.{key}.p99'], 0)} |"
        )
    sl = r.get("serverless")
    if sl:
        lines += [
            "",
            "## Serverless (issue 12): a Lambda-style cold start, side by side",
            "",
            f"Each spawn is a fresh process that imports the function and answers one API Gateway HTTP API (2.0) event"
            f" (`tests/fixtures/aws_lambda/apigw-http-v2.json`) with the upstream at 0 ms; cold start is spawn to the"
            f" response, as the parent sees it. The same process then answers {s.get('serverless_warm', '?')} warm"
            " invocations (each timed, median) and reports its own peak RSS (`VmHWM` of `/proc/self/status`)."
            f" {len(sl['python'])} spawns of each, interleaved, order flipped each spawn; medians, ratios paired per"
            " spawn. orga-ai: `orga_ai.integrations.aws_lambda.handler` (shared secret, `ORGA_PROXY_RATE_LIMIT=none`:"
            " the whole policy path, on `OrgaAI` over http.client; `benchmarks/lambda_invoke.py`). Node: a minimal"
            " handler on @orga-ai/node with no policy layer at all (`benchmarks/node/lambda.js`). The bare rows call"
            " the SDK alone in a fresh process: the floor each handler adds to.",
            "",
            "| Contender | cold start (ms) | warm invocation (µs) | peak RSS (MiB) | cold samples (ms) |",
            "|---|---:|---:|---:|---|",
        ]
        for who, label in (
            ("python", "orga-ai Lambda handler"),
            ("node", "@orga-ai/node minimal handler"),
            ("python_bare", "`OrgaAI().get_session_config()` alone"),
            ("node_bare", "@orga-ai/node `getSessionConfig()` alone"),
        ):
            samples = ", ".join(fmt(x["cold_ms"], 0) for x in sl[who])
            lines.append(
                f"| {label} | {fmt(f[f'sl.{who}.cold_ms'], 0)} | {fmt(f[f'sl.{who}.warm_median_us'], 0)} |"
                f" {fmt(f[f'sl.{who}.peak_rss_kib'] / 1024, 1)} | {samples} |"
            )
        lines += [
            "",
            *(
                [
                    f"This section was measured again right after the run ({r['serverless_rerun']['started'][:16]},"
                    f" `run.py --only serverless`, merged into the run's JSON): {r['serverless_rerun']['reason']}.",
                    "",
                ]
                if r.get("serverless_rerun")
                else []
            ),
            f"Bare SDK ratios (Python / Node): cold {ratio_fmt(f['sl.python_bare.cold_ms.ratio'])}, warm"
            f" {ratio_fmt(f['sl.python_bare.warm_median_us.ratio'])}, peak RSS"
            f" {ratio_fmt(f['sl.python_bare.peak_rss_kib.ratio'])}.",
        ]
    st = r.get("sync_transport")
    if st:
        labels = {
            "httpx": "httpx: two raw requests",
            "urllib3": "urllib3: two raw requests",
            "http.client": "http.client: two raw requests, one connection",
            "OrgaAI": "`OrgaAI.get_session_config()` (default transport: http.client pool)",
            "OrgaAI(http_client=httpx.Client())": "`OrgaAI(http_client=httpx.Client())`",
            "node": "@orga-ai/node `getSessionConfig()`",
        }
        lines += [
            "",
            "## The sync transport, chosen by measurement (`benchmarks/sync_transport.py`)",
            "",
            "Sequential `get_session_config`-shaped exchanges on one kept-alive connection, in one process, rounds"
            " interleaved (median of the per-round medians); cold import in a fresh interpreter (`-X importtime`,"
            " median of 5).",
            "",
            "| Candidate | median (µs) | / Node |",
            "|---|---:|---:|",
        ]
        for key, label in labels.items():
            if key in st["median_us"]:
                lines.append(f"| {label} | {fmt(st['median_us'][key], 0)} | {ratio_fmt(st['ratio_to_node'][key])} |")
        lines += [
            "",
            "Cold import (ms): " + ", ".join(f"`{k}` {fmt(v, 1)}" for k, v in st["import_ms"].items()) + ".",
        ]
    lines += async_transport_lines(r)
    cold = r["cold_start"]
    lines += [
        "",
        "## Start-up",
        "",
        f"- Spawn to first 200 on the route, median of {len(cold['python'])}: orga-ai serve {fmt(f['cold'][0], 0)} ms,"
        f" Node {fmt(f['cold'][1], 0)} ms (samples: {', '.join(fmt(x * 1000, 0) for x in cold['python'])} /"
        f" {', '.join(fmt(x * 1000, 0) for x in cold['node'])}).",
        *(
            [
                f"- The floor under that: a fresh process that only imports the stack (`import uvicorn, httptools,"
                f" uvloop, starlette.applications, prometheus_client, orga_ai._transports.asyncio` /"
                f" `require('express'); require('@orga-ai/node')`) and exits: Python"
                f" {fmt(med(cold['python_stack']) * 1000, 0)} ms, Node {fmt(med(cold['node_stack']) * 1000, 0)} ms.",
                "- What serve does in that time: it reads its settings, imports that stack, builds and validates the"
                " app, and starts uvicorn in the same process, where that app answers (one worker); no request waits"
                " for an import, and nothing the configuration does not use is imported (no aiohttp; no `limits`"
                " with `memory://`). So serve stands on its stack's floor.",
            ]
            if cold.get("python_stack")
            else []
        ),
        f'- `python -X importtime -c "import orga_ai"`: {fmt(f["import"], 2)} ms cumulative for `orga_ai`'
        f" (whole interpreter start + import, wall: {fmt(r['import_time']['interpreter_wall_ms'], 0)} ms).",
        "",
        "## How to reproduce",
        "",
        "`make bench` (or `.venv/bin/python benchmarks/run.py`; `--quick` for a one-round smoke run). It needs node,"
        " npm and wrk; it installs `@orga-ai/node` and express into `benchmarks/node/` with npm. Raw JSON and every"
        " server's log land in `benchmarks/results/` (git-ignored). The Node contender is `benchmarks/node/server.js`,"
        " pointed at the stand-in with @orga-ai/node's own `baseUrl` constructor option (1.0.0-beta.1 also requires"
        " `userEmail` and sends `?email=`, which the stand-in ignores). The Python contender is `orga-ai serve"
        f" --allow-anonymous --rate-limit {s['high_rate_limit']} --global-rate-limit {s['high_rate_limit']}` with"
        " every other setting at its default (access"
        " log at INFO to stderr, which the harness writes to a file).",
        "",
        "![benchmark chart](benchmarks.png)",
        "",
    ]
    return "\n".join(lines)


def chart(r: dict[str, Any], f: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blue, orange = "#3572A5", "#E4A11B"
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    conns = ["1", "16", "64"]
    x = range(len(conns))
    width = 0.38

    ax = axes[0][0]
    who = f["0ms.contenders"]
    colors = {"python": blue, "node": orange, "python_before": "#9ecae1"}
    labels = {"python": "orga-ai serve", "node": "Node", "python_before": f"orga-ai at {f['baseline']}"}
    w = 0.8 / len(who)
    for k, name in enumerate(who):
        offset = (k - (len(who) - 1) / 2) * w
        cpu = [f[f"0ms.{name}.{c}.cpu"] for c in conns]
        ax.bar([i + offset for i in x], cpu, w, label=labels[name], color=colors[name])
    ax.set_xticks(list(x), [f"{c} conn" for c in conns])
    ax.set_title("Route server CPU per request, upstream 0 ms (µs, lower is better)", fontsize=10)
    ax.legend()

    ax = axes[0][1]
    ax.bar(
        [i - width / 2 for i in x], [f[f"0ms.{c}.p99_ms"][0] for c in conns], width, label="orga-ai serve", color=blue
    )
    ax.bar([i + width / 2 for i in x], [f[f"0ms.{c}.p99_ms"][1] for c in conns], width, label="Node", color=orange)
    ax.set_xticks(list(x), [f"{c} conn" for c in conns])
    ax.set_yscale("log")
    ax.set_title("Route p99 latency, upstream 0 ms (ms, log, lower is better)")
    ax.legend()

    ax = axes[1][0]
    labels = ["wrk 1 conn", "wrk 16 conn", "open loop 1", "open loop 16"]
    node = [
        f["20ms.wrk.node.1.p50_ms"],
        f["20ms.wrk.node.16.p50_ms"],
        f["20ms.ol.node.1.p50_ms"],
        f["20ms.ol.node.16.p50_ms"],
    ]
    py = [
        f["20ms.wrk.python.1.p50_ms"],
        f["20ms.wrk.python.16.p50_ms"],
        f["20ms.ol.python.1.p50_ms"],
        f["20ms.ol.python.16.p50_ms"],
    ]
    pool = [float("nan"), float("nan"), f["20ms.ol.python_pool.1.p50_ms"], f["20ms.ol.python_pool.16.p50_ms"]]
    xs = range(len(labels))
    w3 = 0.27
    ax.bar([i - w3 for i in xs], py, w3, label="orga-ai serve", color=blue)
    ax.bar(list(xs), pool, w3, label=f"serve --prefetch {r['settings']['prefetch']}", color="#2CA02C")
    ax.bar([i + w3 for i in xs], node, w3, label="Node", color=orange)
    ax.axhline(f["floor20"], color="grey", linestyle="--", linewidth=1, label="floor: 2 sequential upstream calls")
    ax.set_xticks(list(xs), labels)
    ax.set_title("Route p50, upstream 20 ms (ms, lower is better)")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    names = ["Node SDK", "Node raw fetch", "async SDK", "aiohttp raw", "sync SDK", "httpx raw"]
    keys = ["node", "node_raw", "async", "async_floor", "sync", "sync_floor"]
    colors = [orange, orange, blue, "#9ecae1", blue, "#9ecae1"]
    ax.barh(names[::-1], [f[f"ip.{k}"] for k in keys][::-1], color=colors[::-1])
    ax.set_title("In-process, per call (µs median, lower is better)")

    v = r["versions"]
    fig.suptitle(
        f"orga-ai {v['orga-ai']} vs @orga-ai/node {v['@orga-ai/node']} — {r['started'][:10]}, "
        f"{r['machine']['cores']} cores{' (QUICK run)' if r['quick'] else ''}",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ASYNC_TRANSPORT_LABELS = {
    "aiohttp": "aiohttp (`_transports/aiohttp.py`, own session)",
    "asyncio+httptools": "asyncio + httptools (`_transports/asyncio.py`)",
    "aiosonic": "aiosonic (adapter)",
    "httpcore": "httpcore (adapter)",
    "pyreqwest": "pyreqwest (adapter, Rust)",
    "rnet": "rnet (adapter, Rust)",
    "AsyncOrgaAI": "`AsyncOrgaAI.get_session_config()` (default transport)",
    "AsyncOrgaAI(aiohttp)": "`AsyncOrgaAI(transport=aiohttp)`",
    "node": "@orga-ai/node `getSessionConfig()`",
}


def async_transport_lines(r: dict[str, Any]) -> list[str]:
    """The async transport candidates (benchmarks/async_transport.py), as measured by this run."""
    at = r.get("async_transport")
    if not at:
        return []
    table = at["table"]
    node_cpu = (table.get("node") or {}).get("cpu_us") or NAN
    lines = [
        "",
        "## The async transport, chosen by measurement (`benchmarks/async_transport.py`)",
        "",
        "Each candidate behind the `AsyncTransport` interface, in a fresh process of its own on uvloop, against the"
        f" 0 ms stand-in; {at['rounds']} interleaved rounds of {at['calls']:,} calls, medians over rounds. An exchange"
        " is `get_session_config`-shaped (POST client-secrets, GET ice-config, JSON read). CPU is the process's own"
        " (every thread) over the sequential calls; wall at 16 and 64 is elapsed time over calls. The adapters carry"
        " only what an exchange needs, none of the SDK transports' guarantees, which favours them. Node's CPU is its"
        " process's over every call it made, start-up and warm-up included (it flatters Python).",
        "",
        "| Candidate | CPU / exchange (µs) | CPU / Node | wall, 1 at a time (µs) |"
        " wall / exchange, 16 concurrent (µs) | wall / exchange, 64 concurrent (µs) | cold import (ms) |"
        " RSS after (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in table.items():

        def cell(key: str, digits: int = 0, row: dict[str, Any] = row) -> str:
            value = row.get(key)
            return "-" if value is None else fmt(float(value), digits)

        lines.append(
            f"| {ASYNC_TRANSPORT_LABELS.get(name, name)} | {cell('cpu_us')} |"
            f" {ratio_fmt(float(row.get('cpu_us') or NAN) / node_cpu)} | {cell('wall1_us')} | {cell('wall16_us')} |"
            f" {cell('wall64_us')} | {cell('import_ms', 1)} | {cell('rss_mb', 1)} |"
        )
    lines += [
        "",
        "`AsyncOrgaAI` runs on `_transports/asyncio.py`, the choice this comparison made; aiohttp runs a session a"
        " caller brings (`http_client=`) and is the fallback where httptools is missing.",
    ]
    ratios = at.get("ratio_to_node", {}).get("AsyncOrgaAI")
    if ratios:
        lines += [
            "",
            f"`AsyncOrgaAI.get_session_config()` against @orga-ai/node in this phase: {ratio_fmt(ratios['wall1'])} of"
            f" its wall time one call at a time, {ratio_fmt(ratios['cpu'])} of its CPU per call.",
        ]
    if at.get("not_installed"):
        lines += [
            "",
            "Not installed here, so not measured: "
            + ", ".join(f"`{name}`" for name in at["not_installed"])
            + " (`pip install` them into the venv to add their rows).",
        ]
    for name, why in (at.get("failed") or {}).items():
        lines += ["", f"`{name}` failed: {why}"]
    return lines


def slowloris_lines(r: dict[str, Any]) -> list[str]:
    rows = r.get("slowloris") or []
    if not rows:
        return []
    first = rows[0]
    return [
        f"## Slowloris: /healthz with {first['sockets']:,} half-sent request heads open",
        "",
        f"Each round opens {first['sockets']:,} connections to `orga-ai serve --head-timeout"
        f" {first['head_timeout_s']:g}` that send half a request head and stop, then times 20 `/healthz` requests"
        " (issue 11: within 100 ms) and waits for the server to close every such socket (within the head timeout"
        " + 1 s).",
        "",
        "| /healthz before (ms) | during, median / max (ms) | sockets closed | last closed after (s) |",
        "|---:|---:|---:|---:|",
        f"| {fmt(med([x['healthz_before_ms'] for x in rows]), 1)} |"
        f" {fmt(med([x['healthz_during_median_ms'] for x in rows]), 1)} /"
        f" {fmt(max(x['healthz_during_max_ms'] for x in rows), 1)} |"
        f" {min(x['closed'] for x in rows):,} of {first['sockets']:,} |"
        f" {fmt(max(x['last_closed_after_s'] for x in rows), 2)} |",
        "",
    ]


def write(results: dict[str, Any], docs: Path) -> tuple[Path, Path]:
    figures = compute(results)
    docs.mkdir(exist_ok=True)
    md = docs / "benchmarks.md"
    png = docs / "benchmarks.png"
    md.write_text(markdown(results, figures))
    chart(results, figures, png)
    return md, png


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "latest.json"
    md, png = write(json.loads(source.read_text()), ROOT / "docs")
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
