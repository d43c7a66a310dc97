"""Peak resident set of a process from /proc (Linux); standard library only.

Kept apart so that the memory probe's plain-training baseline imports nothing of hefl.
"""

from __future__ import annotations

from pathlib import Path


def parse_vmhwm_kib(status: str) -> int:
    """The ``VmHWM`` line of a /proc/<pid>/status text (peak resident set), in KiB.

    Raises:
        ValueError: if the text has no VmHWM line (not Linux, or the process is gone).
    """
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split(":", 1)[1].split()
            if unit != "kB":
                raise ValueError(f"VmHWM in unexpected unit {unit!r}")
            return int(value)
    raise ValueError("no VmHWM line in the status text")


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident set size of a running process (default: this one), in MiB."""
    text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return parse_vmhwm_kib(text) / 1024.0
