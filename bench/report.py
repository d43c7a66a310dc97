"""Results document: ratios and target checks, JSON (bench/results/latest.json) and Markdown."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Measurement

SCHEMA = "hefl.bench/v1"
DEFAULT_JSON = Path("bench/results/latest.json")
DEFAULT_MARKDOWN = Path("docs/benchmarks.md")


@dataclass
class SuiteRecord:
    """How one suite went in a run."""

    name: str
    description: str
    duration_s: float
    notes: str = ""
    error: str | None = None


@dataclass
class Run:
    """Everything a results document is built from."""

    command: str
    output: str
    mode: str
    started: str
    finished: str
    duration_s: float
    machine: Mapping[str, object]
    load_average_start: Sequence[float] | None
    load_average_end: Sequence[float] | None
    suites: list[SuiteRecord] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``, or None when the baseline is zero."""
    return None if baseline == 0 else value / baseline


def _entry(m: Measurement, medians: Mapping[str, float]) -> dict[str, Any]:
    s = m.summary
    entry: dict[str, Any] = {
        "median": s.median,
        "min": s.min,
        "max": s.max,
        "repetitions": s.repetitions,
        "unit": m.unit,
        "description": m.description,
    }
    if m.target is not None:
        met = m.target.met_by(s.median)
        entry["target"] = m.target.to_json()
        entry["status"] = "pass" if met else "miss"
        if not met:
            entry["miss_by"] = m.target.shortfall(s.median)
    if m.baseline is not None:
        entry["baseline"] = m.baseline
        base = medians.get(m.baseline)
        entry["baseline_median"] = base
        entry["ratio"] = None if base is None else ratio(s.median, base)
    if m.notes:
        entry["notes"] = m.notes
    return entry


def build(run: Run) -> dict[str, Any]:
    """The results document: flat keys, each with its summary, target, baseline and ratio.

    Ratios use only baselines measured in this run; a baseline that was not run (``--only``)
    gives ``ratio: null``.

    Raises:
        ValueError: if two measurements share a key.
    """
    medians: dict[str, float] = {}
    for m in run.measurements:
        if m.key in medians:
            raise ValueError(f"duplicate measurement key {m.key}")
        medians[m.key] = m.summary.median
    results = {m.key: _entry(m, medians) for m in run.measurements}
    return {
        "schema": SCHEMA,
        "command": run.command,
        "output": run.output,
        "mode": run.mode,
        "started": run.started,
        "finished": run.finished,
        "duration_s": round(run.duration_s, 1),
        "machine": dict(run.machine),
        "load_average": {
            "start": _listed(run.load_average_start),
            "end": _listed(run.load_average_end),
        },
        "suites": {
            s.name: {
                "description": s.description,
                "duration_s": round(s.duration_s, 1),
                "notes": s.notes,
                "error": s.error,
            }
            for s in run.suites
        },
        "results": results,
    }


def _listed(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else [round(v, 2) for v in values]


def fmt(value: float | None) -> str:
    """Compact number: four significant digits, thousands separators from 1,000 up."""
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def _target_text(entry: Mapping[str, Any]) -> str:
    target = entry.get("target")
    return "" if not target else f"{target['op']} {fmt(target['value'])}"


def _status_text(entry: Mapping[str, Any]) -> str:
    status = entry.get("status")
    if status == "pass":
        return "pass"
    if status == "miss":
        return f"**MISS** (+{100 * entry['miss_by']:.1f} %)"
    return ""


def _load(values: Sequence[float] | None) -> str:
    return "unknown" if not values else " / ".join(f"{v:.2f}" for v in values)


def _misses(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for key, e in results.items():
        if e.get("status") != "miss":
            continue
        t = e["target"]
        lines.append(
            f"- `{key}`: {fmt(e['median'])} {e['unit']} against {t['op']} {fmt(t['value'])} "
            f"({t['source']}): missed by {100 * e['miss_by']:.1f} %."
        )
    return lines


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The Markdown report of a results document (as returned by :func:`build`)."""
    results: Mapping[str, Mapping[str, Any]] = doc["results"]
    machine: Mapping[str, Any] = doc["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{doc['command']}` ({doc['mode']} mode) on {doc['finished']}; "
        f"the run took {doc['duration_s']:.0f} s. Do not edit by hand: rerun the command "
        f"(`make bench`). Raw figures: `{doc['output']}`. Targets are DESIGN.md §12; "
        "ratios divide a median by its baseline's median, both measured in this run.",
        "",
    ]
    if doc["mode"] != "full":
        out += [
            "> **Quick mode:** small inputs and few clients, scaled to 1M parameters. "
            "These figures are a smoke test, not the figures to quote.",
            "",
        ]
    failed = {n: s for n, s in doc["suites"].items() if s.get("error")}
    if failed:
        out += ["## FAILED", ""]
        out += [f"- suite `{n}`: {s['error']}" for n, s in failed.items()]
        out += ["", "Figures of a failed suite are not reported.", ""]
    out += [
        "## Results",
        "",
        "| figure | median [min – max] | unit | n | target | baseline | ratio | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, e in results.items():
        spread = f"{fmt(e['median'])} [{fmt(e['min'])} – {fmt(e['max'])}]"
        baseline = e.get("baseline")
        base_text = "" if baseline is None else f"`{baseline}` ({fmt(e.get('baseline_median'))})"
        ratio_text = "" if baseline is None else fmt(e.get("ratio"))
        out.append(
            f"| `{key}` | {spread} | {e['unit']} | {e['repetitions']} | {_target_text(e)} "
            f"| {base_text} | {ratio_text} | {_status_text(e)} |"
        )
    targeted = [e for e in results.values() if "status" in e]
    misses = _misses(results)
    out += ["", "## Against the targets", ""]
    passed = sum(1 for e in targeted if e["status"] == "pass")
    out.append(f"{passed} of {len(targeted)} targeted figures meet their target.")
    if misses:
        out += ["", "Missed:", "", *misses]
    out += ["", "## What each figure is", ""]
    for key, e in results.items():
        line = f"- `{key}`: {e['description']}."
        if e.get("notes"):
            line += f" {e['notes']}"
        out.append(line)
    for name, suite in doc["suites"].items():
        if suite.get("notes"):
            out += ["", f"## Suite `{name}`", "", suite["description"] + ".", "", suite["notes"]]
    load = doc["load_average"]
    suites = ", ".join(f"{n} {s['duration_s']:.0f} s" for n, s in doc["suites"].items())
    out += [
        "",
        "## Machine and run",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{doc['command']}` |",
        f"| started / finished (UTC) | {doc['started']} / {doc['finished']} |",
        f"| duration | {doc['duration_s']:.0f} s ({suites}) |",
        f"| CPU | {machine.get('cpu_model')} |",
        f"| cores (logical / usable) | {machine.get('logical_cores')} / "
        f"{machine.get('usable_cores')} |",
        f"| memory | {machine.get('memory_gib')} GiB |",
        f"| OS | {machine.get('os')} |",
        f"| load average 1/5/15 min, start | {_load(load.get('start'))} |",
        f"| load average 1/5/15 min, end | {_load(load.get('end'))} |",
        f"| OMP_NUM_THREADS | {machine.get('omp_num_threads')} |",
        f"| python / numpy | {machine.get('python')} / {machine.get('numpy')} |",
        f"| openfhe / tenseal / torch | {machine.get('openfhe')} / {machine.get('tenseal')} / "
        f"{machine.get('torch')} |",
        f"| git commit | {machine.get('git_commit')} |",
        "",
    ]
    return "\n".join(out)


def write(doc: Mapping[str, Any], json_path: Path, markdown_path: Path | None) -> None:
    """Writes the JSON (and the Markdown, if a path is given), each atomically."""
    _write_atomic(json_path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    if markdown_path is not None:
        _write_atomic(markdown_path, render_markdown(doc))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
