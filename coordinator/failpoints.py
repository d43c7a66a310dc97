"""Failpoints: named places where a test can make the coordinator die on the spot.

``HEFL_FAILPOINTS="upload.accepted@2#3,round.opening@3"`` kills the process (``os._exit``, no
cleanup, as SIGKILL would) at the third accepted upload of round 2 and when round 3 starts
opening its aggregate. Crash tests use them to stop the coordinator at exact points of a round
that are too short to hit with a signal; nothing is armed unless the variable is set.

Points: ``upload.accepted`` (after an upload is durably accepted), ``round.certifying``,
``round.opening``, ``round.decoded`` (the aggregate is opened and decoded, nothing published
yet), ``round.published`` (the new version is committed).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "HEFL_FAILPOINTS"
EXIT_CODE = 137  # what a SIGKILLed process reports


@dataclass(frozen=True)
class Failpoint:
    """Die at the ``hit``-th time ``name`` is reached in round ``round_number``."""

    name: str
    round_number: int
    hit: int = 1


def parse(spec: str) -> list[Failpoint]:
    """Parses ``name@round[#hit],...``.

    Raises:
        ValueError: on a malformed entry (a typo must not silently disarm a crash test).
    """
    points = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, at, rest = entry.partition("@")
        round_text, _, hit_text = rest.partition("#")
        if not name or not at or not round_text.isdigit() or (hit_text and not hit_text.isdigit()):
            raise ValueError(f"bad failpoint {entry!r}: expected name@round or name@round#hit")
        points.append(Failpoint(name, int(round_text), int(hit_text) if hit_text else 1))
    return points


_ARMED = parse(os.environ.get(ENVIRONMENT_VARIABLE, ""))
_HITS: Counter[tuple[str, int]] = Counter()


def reach(name: str, round_number: int) -> None:
    """Marks that ``name`` was reached in ``round_number``; exits if a failpoint says so."""
    if not _ARMED:
        return
    _HITS[(name, round_number)] += 1
    for point in _ARMED:
        if (point.name, point.round_number) == (name, round_number) and (
            _HITS[(name, round_number)] == point.hit
        ):
            logger.critical("failpoint %s@%d#%d: exiting now", name, round_number, point.hit)
            logging.shutdown()
            os._exit(EXIT_CODE)
