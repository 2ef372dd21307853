"""Every goal of issue #14 in one command that stops by itself: runs the benchmarks that measure them, one after the
other, and prints each goal beside its figure.

    .venv/bin/python benchmarks/goals.py [--quick] [--skip throughput,postgresql,large,soak]

- `throughput.py` on SQLite (deferred ingest, `paybot serve`): the bare-aiohttp ceiling, latency at 200/s,
  acknowledged payments/s and CPU per payment at 1,000/s for 60 s, deliveries/s with a 100 ms provider;
- `throughput.py --engine postgresql --workers 2 --rate 1500`: the same on PostgreSQL (one web, two workers; 1,500
  payments/s offered, the goal there), and scale-out (two workers against one);
- `large_data.py`: a 100,000-invoice import under webhooks, `find`/`status`, `audit verify` and `audit export` at
  1,000,000 audit entries;
- `soak.py`: 10,000 payments, 30 % provider faults, three SIGKILLs.

About 13 minutes on a quiet 2-core machine (`--quick`: shorter loads and smaller data, for a smoke test;
its figures are not the goals'). Each benchmark's own output is passed through as it runs; the exit status is 1
when a benchmark reported a PROBLEM (lost, duplicated or corrupted data), not when a speed goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
Result = dict[str, Any]


@dataclass(frozen=True)
class Run:
    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]


RUNS = (
    Run("throughput", "throughput.py", ("--ingest-mode", "deferred"),
        ("--seconds", "20", "--latency-seconds", "10", "--deliveries", "2000")),
    Run("postgresql", "throughput.py", ("--engine", "postgresql", "--workers", "2", "--ingest-mode", "deferred",
                                        "--rate", "1500", "--skip", "ceiling,delivery"),
        ("--seconds", "20", "--latency-seconds", "10", "--deliveries", "2000")),
    Run("large", "large_data.py", (), ("--rows", "20000", "--entries", "200000", "--small-entries", "20000")),
    Run("soak", "soak.py", (), ("--payments", "2000")),
)


@dataclass(frozen=True)
class Goal:
    run: str
    figure: str
    goal: str
    measured: Callable[[Result], str]
    met: Callable[[Result], bool]


def _backlog_growth(t: Result) -> float:
    return (t["backlog_end"] - t["backlog_start"]) / t["seconds"]


def _keeps_pace(t: Result, rate: float) -> bool:
    """`rate`/s offered was acknowledged at `rate`/s: offered at exactly the goal's rate, the rate measured over the
    window is the goal's give or take the window's edges (999.6 or 1,000.1 a second); the backlog says whether
    paybot keeps pace."""
    return t["offered"] >= rate * 0.995 and t["acked_rate"] >= rate * 0.995 and _backlog_growth(t) <= 10


def _max_query_ms(r: Result) -> float:
    return max(q["max_ms"] for q in r["trail"]["queries"].values())


def _export_growth(r: Result) -> float:
    peaks = [e["peak_rss_mb"] for _, e in sorted(r["trail"]["export"].items(), key=lambda kv: int(kv[0]))]
    return peaks[-1] / peaks[0] - 1


def _soak_causes(r: Result) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in sorted(r["duplicates_by_cause"].items())) or "none"


GOALS = (
    Goal("throughput", "SQLite: payments acknowledged/s during 60 s at 1,000/s offered (backlog growth)",
         "≥ 1,000/s, flat",
         lambda r: f"{r['deferred_throughput']['acked_rate']:.0f}/s "
                   f"({_backlog_growth(r['deferred_throughput']):+.0f}/s); ceiling {r['ceiling']:.0f} req/s",
         lambda r: _keeps_pace(r["deferred_throughput"], 1000)),
    Goal("throughput", "SQLite: server CPU per acknowledged payment", "≤ 0.5 ms",
         lambda r: f"{r['deferred_throughput']['cpu_ms']:.2f} ms",
         lambda r: r["deferred_throughput"]["cpu_ms"] <= 0.5),
    Goal("throughput", "SQLite: webhook → provider p50 / p99 at 200/s", "p99 < 100 ms",
         lambda r: f"{r['deferred_latency']['e2e_p50']:.0f} / {r['deferred_latency']['e2e_p99']:.0f} ms "
                   f"(after 1 s: {r['deferred_latency'].get('steady_p99', float('nan')):.0f})",
         lambda r: r["deferred_latency"]["e2e_p99"] < 100),
    Goal("throughput", "deliveries/s, one worker, provider 100 ms a call (sent twice)", "≥ 500/s, 0",
         lambda r: f"{r['delivery']['rate']:.0f}/s ({r['delivery']['repeats']})",
         lambda r: r["delivery"]["rate"] >= 500 and r["delivery"]["repeats"] == 0),
    Goal("postgresql", "PostgreSQL, web + 2 workers: payments acknowledged/s at 1,500/s offered (backlog growth)",
         "≥ 1,500/s, flat",
         lambda r: f"{r['deferred_throughput']['acked_rate']:.0f}/s "
                   f"({_backlog_growth(r['deferred_throughput']):+.0f}/s; {r['deferred_throughput']['offered']:.0f}/s "
                   f"sent), {r['deferred_throughput']['cpu_ms']:.2f} ms CPU each",
         lambda r: _keeps_pace(r["deferred_throughput"], 1500)),
    Goal("postgresql", "PostgreSQL: webhook → provider p50 / p99 at 200/s", "p99 < 100 ms",
         lambda r: f"{r['deferred_latency']['e2e_p50']:.0f} / {r['deferred_latency']['e2e_p99']:.0f} ms "
                   f"(after 1 s: {r['deferred_latency'].get('steady_p99', float('nan')):.0f})",
         lambda r: r["deferred_latency"]["e2e_p99"] < 100),
    Goal("postgresql", "PostgreSQL: two workers' deliveries over one (sent twice)", "≥ 1.7×, 0",
         lambda r: f"{r['scaleout']['ratio']:.2f}× ({r['scaleout']['one']['rate']:.0f} → "
                   f"{r['scaleout']['two']['rate']:.0f}/s; "
                   f"{r['scaleout']['one']['repeats'] + r['scaleout']['two']['repeats']})",
         lambda r: r["scaleout"]["ratio"] >= 1.7 and not r["scaleout"]["problems"]),
    Goal("large", "import 100,000 invoices beside `serve` (webhooks not 2xx / over their deadline)",
         "< 30 s, none",
         lambda r: f"{r['import']['invoices_s']} s ({sum(r['import']['webhooks']['not_2xx'].values())} / "
                   f"{r['import']['webhooks']['over_deadline']})",
         lambda r: r["import"]["invoices_s"] < 30 and not r["import"]["webhooks"]["not_2xx"]
         and not r["import"]["webhooks"]["over_deadline"]),
    Goal("large", "`/payments find` and `status` at 1,000,000 audit entries, slowest", "< 100 ms",
         lambda r: f"{_max_query_ms(r):.0f} ms", lambda r: _max_query_ms(r) < 100),
    Goal("large", "`paybot audit verify`, 1,000,000 entries", "< 10 s",
         lambda r: f"{r['trail']['verify_s']} s", lambda r: r["trail"]["verify_s"] < 10),
    Goal("large", "`paybot audit export` peak memory, 100,000 → 1,000,000 entries", "constant",
         lambda r: " → ".join(f"{e['peak_rss_mb']} MB" for e in r["trail"]["export"].values()),
         lambda r: _export_growth(r) <= 0.1),
    Goal("soak", "soak: 10,000 payments, 30 % faults, 3 SIGKILLs: lost / duplicates unexplained", "0 / 0",
         lambda r: f"{r['lost']} / {len(r['problems'])} problems; duplicates {r['duplicates']} ({_soak_causes(r)})",
         lambda r: r["lost"] == 0 and not r["problems"]),
)


async def run(spec: Run, quick: bool) -> tuple[Result | None, int]:
    """The benchmark's output passed through as it comes; its RESULT line parsed."""
    argv = [sys.executable, str(HERE / spec.script), *spec.args, *(spec.quick if quick else ())]
    print(f"\n===== {spec.name}: {' '.join(argv[1:])}", flush=True)
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    result: Result | None = None
    async for raw in process.stdout:
        line = raw.decode(errors="replace")
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    return result, await process.wait()


def table(results: dict[str, Result | None]) -> list[str]:
    rows = [("figure", "goal", "measured", "met")]
    for goal in GOALS:
        if goal.run not in results:
            continue
        result = results[goal.run]
        try:
            assert result is not None
            rows.append((goal.figure, goal.goal, goal.measured(result), "yes" if goal.met(result) else "NO"))
        except (AssertionError, KeyError, TypeError, ZeroDivisionError):
            rows.append((goal.figure, goal.goal, "(not measured: the run failed)", "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


async def main(args: argparse.Namespace) -> int:
    results: dict[str, Result | None] = {}
    failed = []
    for spec in RUNS:
        if spec.name in args.skip:
            continue
        results[spec.name], code = await run(spec, args.quick)
        if code != 0:
            failed.append(f"{spec.name} exited {code}")
    print("\n===== issue #14, goal by goal" + (" (--quick: smaller runs, not the goals' figures)" if args.quick else ""))
    for line in table(results):
        print(line)
    if failed:
        print(f"PROBLEMS: {'; '.join(failed)}")
    return 1 if failed else 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter loads, smaller data (a smoke test)")
    parser.add_argument("--skip", type=lambda v: {s.strip() for s in v.split(",") if s.strip()}, default=set(),
                        help="comma-separated runs: " + ",".join(spec.name for spec in RUNS))
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse(sys.argv[1:]))))
