"""The benchmark's figures: percentiles, rates, and the printed table. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): the smallest value that at
    least q % of the values do not exceed. Never interpolated, so p99 is a latency some
    declaration really had."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50, p95, p99 and max in milliseconds, and how many values they summarise."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 95) * 1000, 1),
        "p99_ms": round(percentile(seconds, 99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


def _by_window(
    points: Sequence[tuple[float, float]], window_s: float
) -> list[list[tuple[float, float]]]:
    """(submitted at, latency) points grouped by the ``window_s`` window of the schedule
    they were submitted in, the windows in order."""
    windows: dict[int, list[tuple[float, float]]] = {}
    for at, latency in points:
        windows.setdefault(int(at // window_s), []).append((at, latency))
    return [inside for _, inside in sorted(windows.items())]


def timeline(points: Sequence[tuple[float, float]]) -> list[dict[str, float | int]]:
    """(submitted at, latency) seconds as one row per second of the schedule: how many
    were submitted in it, their median and worst latency in milliseconds."""
    rows: list[dict[str, float | int]] = []
    for inside in _by_window(points, 1.0):
        values = [latency for _, latency in inside]
        rows.append(
            {
                "second": int(inside[0][0]),
                "count": len(values),
                "p50_ms": round(percentile(values, 50) * 1000, 1),
                "max_ms": round(max(values) * 1000, 1),
            }
        )
    return rows


def window_percentiles(
    points: Sequence[tuple[float, float]], q: float, window_s: float = 30.0
) -> list[float]:
    """The ``q``-th percentile, in milliseconds, of the latencies of each ``window_s``
    window of the schedule ((submitted at, latency) seconds, as for :func:`timeline`). A
    window whose submissions span less than nine tenths of it (the end of the run) is
    left out: its few values would say little."""
    return [
        round(percentile([latency for _, latency in inside], q) * 1000, 1)
        for inside in _by_window(points, window_s)
        if max(at for at, _ in inside) - min(at for at, _ in inside) >= 0.9 * window_s
    ]


def backlog_grew(rows: Sequence[Mapping[str, float | int]]) -> bool:
    """Whether latency kept climbing through a paced run (a timeline of :func:`timeline`):
    the median of its last third more than twice that of its first third, and above
    250 ms. Then the offered load was not sustained, and the percentiles depend on how
    long the run lasted rather than on the pipeline's latency."""
    if len(rows) < 6:
        return False
    third = len(rows) // 3
    first = percentile([float(r["p50_ms"]) for r in rows[:third]], 50)
    last = percentile([float(r["p50_ms"]) for r in rows[-third:]], 50)
    return last > 2 * first and last > 250


def steady_rate(arrivals: Sequence[float], low: float = 0.1, high: float = 0.9) -> float | None:
    """Arrivals per second between the ``low`` and ``high`` fractions of them (sorted
    seconds since the start): the rate without the start-up ramp and the final tail."""
    if len(arrivals) < 10:
        return None
    ordered = sorted(arrivals)
    first = ordered[int(low * (len(ordered) - 1))]
    last_index = int(high * (len(ordered) - 1))
    last = ordered[last_index]
    if last <= first:
        return None
    return (last_index - int(low * (len(ordered) - 1))) / (last - first)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, figures right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max([len(h), *(len(r[i]) for r in cells if i < len(r))]) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(r) for r in cells)])


def render_result(result: Mapping[str, Any]) -> str:
    """The whole run as tables: throughput and latency per configuration, the raw pipe
    and the ratio, and each process's resident memory at start and end."""
    sections = []
    rows = []
    for phase in result.get("hub", []):
        saturation = phase.get("saturation", {})
        latency = phase.get("latency", {})
        figures = latency.get("latency", {})
        rows.append(
            [
                f"{phase['workers']} hub worker{'s' if phase['workers'] > 1 else ''}",
                saturation.get("declarations_per_second"),
                saturation.get("steady_per_second"),
                latency.get("offered_per_second"),
                figures.get("p50_ms"),
                figures.get("p95_ms"),
                figures.get("p99_ms"),
                spread(latency.get("p99_ms_by_window")),
                f"{saturation.get('decided', 0)}/{saturation.get('declarations', 0)}",
                others_cpu(saturation.get("cpu")),
                others_cpu(latency.get("cpu")),
                calibration(saturation.get("cpu"), latency.get("cpu")),
                clearance_ms(saturation),
                phase.get("records_read_again"),
            ]
        )
    sections.append(
        render_table(
            "End to end, signed and encrypted (saturation; latency at half that rate; "
            "p99 by 30 s: lowest-highest p99 of the latency run's 30-s windows; "
            "others: CPUs other work kept busy meanwhile; calib: ms of CPU a fixed piece of "
            "work took before and after the runs, lowest-highest, higher on a slower "
            "machine; clr: ms of CPU the clearance side spent per declaration at "
            "saturation, the same work in every run, so a machine slower during the run "
            "shows there; read again: records the hub's offset watchdog found dropped and read "
            "again during both runs)",
            [
                "configuration",
                "decl/s",
                "steady/s",
                "offered/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p99 by 30 s",
                "decided",
                "others sat",
                "others lat",
                "calib ms",
                "clr ms",
                "read again",
            ],
            rows,
        )
    )
    for phase in result.get("hub", []):
        if phase.get("latency", {}).get("backlog_grew"):
            sections[-1] += (
                f"\nNOT SUSTAINED with {phase['workers']} worker(s): latency kept climbing "
                "through the paced run (its timeline in the JSON); its percentiles measure "
                "a growing queue."
            )
    raw = result.get("raw_pipe")
    if raw:
        ratios = result.get("hub_over_raw", {})
        raw_rows: list[list[Any]] = [
            ["raw 3-hop pipe (records/s)", raw.get("records_per_second")],
            ["others' CPU meanwhile", others_cpu(raw.get("cpu"))],
            *([f"hub ÷ raw, {k}", ratio(v)] for k, v in ratios.items()),
        ]
        sections.append(render_table("Same broker, no processing", ["", "figure"], raw_rows))
    sections.append(render_processes(result))
    return "\n\n".join(sections)


def spread(values: Sequence[float] | None) -> str:
    """``lowest-highest`` in whole units, or ``-`` when there is nothing to spread."""
    if not values:
        return "-"
    return f"{min(values):.0f}-{max(values):.0f}"


def others_cpu(cpu: Mapping[str, float] | None) -> str:
    """CPUs that other work kept busy on average while a figure was measured."""
    if not cpu or not cpu.get("wall_s"):
        return "-"
    return f"{cpu['others_s'] / cpu['wall_s']:.2f}"


def calibration(*cpus: Mapping[str, Any] | None) -> str:
    """The lowest and highest calibration of the measurements (``benchmarks/cpu.py``)."""
    values = [v for cpu in cpus if cpu for v in cpu.get("calibration_ms", [])]
    if not values:
        return "-"
    return f"{min(values):.1f}-{max(values):.1f}"


def clearance_ms(saturation: Mapping[str, Any]) -> str:
    """The clearance side's CPU per declaration decided in a saturation run: it seals the
    same declarations and opens their decisions in every run, so, unlike the calibration
    before and after, it measures the machine's speed through the whole run."""
    spent = saturation.get("cpu", {}).get("by_process_s", {}).get("clearance (this process)")
    decided = saturation.get("decided")
    if not spent or not decided:
        return "-"
    return f"{spent * 1000 / decided:.2f}"


def ratio(value: float) -> str:
    """A small ratio both ways: ``0.0126 (1 : 79)``."""
    if value <= 0:
        return "-"
    return f"{value:.4f} (1 : {1 / value:,.0f})" if value < 1 else f"{value:.2f}"


def render_processes(result: Mapping[str, Any]) -> str:
    """Each process: resident memory at start and end, and how much of a CPU it used
    during each saturation run (the bottleneck stands out)."""
    memory: Mapping[str, Mapping[str, float | None]] = result.get("rss_mib", {})
    runs = [
        (f"cpu % sat {phase['workers']}w", phase.get("saturation", {}).get("cpu") or {})
        for phase in result.get("hub", [])
    ]
    raw_cpu = (result.get("raw_pipe") or {}).get("cpu") or {}
    names = list(memory)
    for _, cpu in [*runs, ("", raw_cpu)]:
        names += [n for n in cpu.get("by_process_s", {}) if n not in names]
    rows = []
    for name in names:
        m = memory.get(name, {})
        row: list[Any] = [name, m.get("start"), m.get("end"), _growth(m.get("start"), m.get("end"))]
        for _, cpu in runs:
            row.append(_share(cpu, name))
        row.append(_share(raw_cpu, name))
        rows.append(row)
    headers = ["process", "RSS start", "RSS end", "change", *(h for h, _ in runs), "cpu % raw"]
    return render_table(
        "Processes: resident memory (MiB) and CPU used during each measurement (% of one core)",
        headers,
        rows,
    )


def _share(cpu: Mapping[str, Any], name: str) -> str:
    seconds = cpu.get("by_process_s", {}).get(name)
    if seconds is None or not cpu.get("wall_s"):
        return "-"
    return f"{seconds / cpu['wall_s'] * 100:.0f}"


def _growth(start: float | None, end: float | None) -> str:
    if not start or end is None:
        return "-"
    return f"{(end - start) / start * 100:+.0f} %"
