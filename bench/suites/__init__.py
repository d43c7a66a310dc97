"""Suite registry: every module in this package that defines ``SUITE`` is a benchmark suite.

A suite is a module ``bench/suites/<name>.py`` with a module-level ``SUITE = Suite(...)`` whose
``name`` equals the module name. Adding a file is all it takes to plug one in; modules are
imported only when selected, so one suite's optional dependency cannot break another.

Contract for ``run(quick, ctx)``: return measurements whose keys start with ``<name>.``; raise
:class:`bench.harness.BenchmarkError` when the thing measured did not work (a wrong sum, a
failed round): a figure measured on a broken run must never be reported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Measurement, RunContext

SuiteRun = Callable[[bool, RunContext], list[Measurement]]

# Suites that exist run in this order; others follow alphabetically.
_PREFERRED_ORDER = ("crypto",)


@dataclass(frozen=True)
class Suite:
    """A named group of benchmarks.

    Attributes:
        name: Module name, and the first component of every key it reports.
        description: One line for ``--list`` and the report.
        run: ``run(quick, ctx) -> list[Measurement]``.
        parts: Names a caller may select with ``--only name.part`` (empty: not selectable).
        notes: Markdown appended to the report: method, what is and is not timed.
    """

    name: str
    description: str
    run: SuiteRun
    parts: tuple[str, ...] = ()
    notes: str = ""


class SuiteNotFoundError(LookupError):
    """No suite module of that name, or the module defines no valid ``SUITE``."""


def available() -> list[str]:
    """Names of every suite module, in run order (nothing is imported)."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    ranked = {name: i for i, name in enumerate(_PREFERRED_ORDER)}
    return sorted(names, key=lambda n: (ranked.get(n, len(ranked)), n))


def load(name: str) -> Suite:
    """Imports ``bench.suites.<name>`` and returns its ``SUITE``.

    Raises:
        SuiteNotFoundError: if there is no such module or its ``SUITE`` is missing or misnamed.
    """
    if name not in available():
        raise SuiteNotFoundError(f"no suite {name!r}; available: {', '.join(available())}")
    module = importlib.import_module(f"{__name__}.{name}")
    suite = getattr(module, "SUITE", None)
    if not isinstance(suite, Suite) or suite.name != name:
        raise SuiteNotFoundError(f"bench/suites/{name}.py must define SUITE = Suite({name!r}, ...)")
    return suite
