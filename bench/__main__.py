"""``python -m bench``: run suites, write bench/results/latest.json and a Markdown table."""

from __future__ import annotations

import argparse
import os

# OpenMP reads this once, when OpenFHE's libgomp loads (suites import it later): one thread,
# because the targets are one-core figures and extra threads stall on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from bench import report, suites  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchmarkError,
    Measurement,
    RunContext,
    load_average,
    machine_info,
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_selection(only: str | None, available: list[str]) -> dict[str, frozenset[str] | None]:
    """``--only crypto,crypto.oneshot,...`` -> {suite: parts or None for all}, in run order.

    Raises:
        ValueError: for a suite that does not exist.
    """
    if not only:
        return {name: None for name in available}
    chosen: dict[str, set[str] | None] = {}
    for item in (s.strip() for s in only.split(",")):
        if not item:
            continue
        name, _, part = item.partition(".")
        if name not in available:
            raise ValueError(f"no suite {name!r}; available: {', '.join(available)}")
        if not part:
            chosen[name] = None
        elif name not in chosen or chosen[name] is not None:
            parts = chosen.setdefault(name, set())
            assert parts is not None
            parts.add(part)
    return {
        name: (None if chosen[name] is None else frozenset(chosen[name] or ()))
        for name in available
        if name in chosen
    }


def run_suite(suite: suites.Suite, ctx: RunContext) -> tuple[report.SuiteRecord, list[Measurement]]:
    """Runs one suite; a failure is recorded (and its figures dropped), never raised."""
    begun = time.perf_counter()
    problem: str | None = None
    measured: list[Measurement] = []
    try:
        measured = suite.run(ctx.quick, ctx)
        bad = [m.key for m in measured if m.suite != suite.name]
        if bad:
            raise BenchmarkError(f"keys outside suite {suite.name}: {', '.join(bad)}")
    except BenchmarkError as exc:
        problem = str(exc)
    except Exception as exc:  # any crash fails the suite, not the whole report
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        measured = []
        print(f"SUITE {suite.name} FAILED: {problem}", file=sys.stderr)
    elapsed = time.perf_counter() - begun
    record = report.SuiteRecord(suite.name, suite.description, elapsed, suite.notes, problem)
    return record, measured


def output_paths(
    quick: bool, only: str | None, output: Path | None, markdown: Path | None
) -> tuple[Path, Path]:
    """Where a run writes its JSON and Markdown: only a full run of every suite replaces
    bench/results/latest.json and docs/benchmarks.md unless the caller names the files."""
    complete = only is None and not quick
    json_path = output or (
        report.DEFAULT_JSON
        if complete
        else report.DEFAULT_JSON.with_name("quick.json" if quick else "partial.json")
    )
    markdown_path = markdown or (
        report.DEFAULT_MARKDOWN if complete and output is None else json_path.with_suffix(".md")
    )
    return json_path, markdown_path


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 if any suite failed)."""
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    parser.add_argument(
        "--only", metavar="SUITE[.PART],...", help="run only these suites or suite parts"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results JSON path (default: {report.DEFAULT_JSON} for a full run of every suite, "
        "bench/results/quick.json or partial.json otherwise, so a smoke run never replaces the "
        "published figures)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help=f"Markdown report path (default: {report.DEFAULT_MARKDOWN} for a full run of every "
        "suite, otherwise beside --output with a .md suffix)",
    )
    parser.add_argument("--list", action="store_true", help="list suites and their parts")
    args = parser.parse_args(args_list)

    names = suites.available()
    if args.list:
        for listed in names:
            found = suites.load(listed)
            extra = f" (parts: {', '.join(found.parts)})" if found.parts else ""
            print(f"{listed}: {found.description}{extra}")
        return 0
    try:
        selection = parse_selection(args.only, names)
    except ValueError as error:
        parser.error(str(error))
    loaded = {name: suites.load(name) for name in selection}
    for name, parts in selection.items():
        unknown = sorted((parts or frozenset()) - set(loaded[name].parts))
        if unknown:
            parser.error(f"suite {name} has no part(s) {', '.join(unknown)}")

    args.output, markdown = output_paths(args.quick, args.only, args.output, args.markdown)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in args_list)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print(
            f"warning: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
            "the targets are one-core figures",
            file=sys.stderr,
        )

    started, start_load, t0 = _now(), load_average(), time.perf_counter()
    machine = machine_info()
    print(f"load average at start: {start_load}", file=sys.stderr)
    run = report.Run(
        command=command,
        output=str(args.output),
        mode="quick" if args.quick else "full",
        started=started,
        finished=started,
        duration_s=0.0,
        machine=machine,
        load_average_start=start_load,
        load_average_end=None,
    )
    failed = False
    for name, parts in selection.items():
        record, measured = run_suite(loaded[name], RunContext(quick=args.quick, parts=parts))
        failed = failed or record.error is not None
        run.suites.append(record)
        run.measurements.extend(measured)

    run.finished, run.load_average_end = _now(), load_average()
    run.duration_s = time.perf_counter() - t0
    doc = report.build(run)
    report.write(doc, args.output, markdown)
    print(report.render_markdown(doc).split("## Against the targets")[0].rstrip())
    print(
        f"\n{len(run.measurements)} figures in {run.duration_s:.0f} s; load average at end "
        f"{run.load_average_end}; wrote {args.output} and {markdown}",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
