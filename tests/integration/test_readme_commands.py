"""Every command in README.md's code blocks runs as written, here or in a named test or CI step.

The "by hand" block runs for real in a temporary copy of the repository (its commands write
var/, which must not touch the working tree): a CA and device identities, the initial model, a
mutual-TLS coordinator and five key-holder workers, until a round is published. The other
commands are long or rebuild things (`make test`, `make lint`...); COVERED_ELSEWHERE names the
test or CI step that runs each, and a test fails when the README gains a command that is
neither run here nor listed there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
BY_HAND_HEADING = "## Running coordinator and workers by hand"
KEY_HOLDERS = 5  # the README: "the first five with --key-holder form the committee"
# Fenced blocks in these languages hold commands; untagged ones too, unless they are diagrams.
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
DIAGRAM_CHARACTERS = set("─│┌┐└┘►◄")


@dataclass(frozen=True)
class Coverage:
    """Where a README command is exercised when this module does not run it."""

    ci_step: str = ""
    """A line of .ci/run that runs it."""
    test: str = ""
    """A test file (repository path) that runs it or what it wraps."""
    note: str = ""


COVERED_ELSEWHERE: dict[str, Coverage] = {
    "make test": Coverage(ci_step="make test"),
    "make lint": Coverage(ci_step="make lint"),
    "make protos-check": Coverage(ci_step="make protos-check"),
    "make protos": Coverage(
        ci_step="make protos-check",
        note="scripts/check-protos.sh runs scripts/gen-protos.sh, which `make protos` runs,"
        " into a scratch folder and compares with the committed stubs",
    ),
    "make demo": Coverage(
        test="tests/integration/test_secure_federation.py",
        note="runs examples.federation.LocalFederation, the harness examples/demo.py drives;"
        " test_make_demo_target_answers_help below runs the make target itself with --help",
    ),
    "make bench": Coverage(
        test="tests/bench/test_harness.py",
        note="runs the `python -m bench` entry point with --quick and every crypto suite part at"
        " a tiny scale; full benchmark runs are measurements, outside CI",
    ),
}


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README and the heading above it."""

    heading: str
    language: str
    text: str


def readme_blocks(markdown: str) -> list[Block]:
    """Every fenced block, with its section heading."""
    blocks: list[Block] = []
    heading, language, inside = "", "", False
    lines: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append(Block(heading, language, "\n".join(lines)))
                inside = False
            else:
                language, lines, inside = line[3:].strip(), [], True
        elif inside:
            lines.append(line)
        elif line.startswith("#"):
            heading = line.strip()
    assert not inside, "unterminated code block in README.md"
    return blocks


def block_commands(block: Block) -> list[str]:
    """The command lines of a shell block (comment-only and blank lines dropped)."""
    if block.language not in SHELL_LANGUAGES or DIAGRAM_CHARACTERS & set(block.text):
        return []
    return [line.strip() for line in block.text.splitlines() if command_of(line)]


def command_of(line: str) -> str:
    """A command line without its trailing comment, whitespace collapsed."""
    return " ".join(re.sub(r"(^|\s)#.*$", "", line).split())


def readme_commands() -> list[tuple[str, str]]:
    """(heading, line as written) for every command in the README."""
    return [
        (block.heading, line)
        for block in readme_blocks(README.read_text())
        for line in block_commands(block)
    ]


def by_hand_lines() -> list[str]:
    return [line for heading, line in readme_commands() if heading == BY_HAND_HEADING]


# --- the mapping ---------------------------------------------------------------------------------


def test_the_readme_has_the_expected_blocks() -> None:
    blocks = readme_blocks(README.read_text())
    diagrams = [b for b in blocks if DIAGRAM_CHARACTERS & set(b.text)]
    assert len(diagrams) == 1 and "coordinator" in diagrams[0].text  # "How it works"
    assert len(by_hand_lines()) == 4


def test_every_readme_command_is_run_here_or_covered_elsewhere() -> None:
    elsewhere = {
        command_of(line) for heading, line in readme_commands() if heading != BY_HAND_HEADING
    }
    assert elsewhere == set(COVERED_ELSEWHERE), (
        "README commands and COVERED_ELSEWHERE differ: add the new command's test or CI step"
        " to COVERED_ELSEWHERE (or run it in this module), and drop entries the README lost"
    )
    ci_steps = {line.strip() for line in CI_SCRIPT.read_text().splitlines()}
    makefile = (ROOT / "Makefile").read_text()
    for command, coverage in COVERED_ELSEWHERE.items():
        assert coverage.ci_step or coverage.test, command
        if coverage.ci_step:
            assert coverage.ci_step in ci_steps, (command, coverage.ci_step)
        if coverage.test:
            assert (ROOT / coverage.test).is_file(), (command, coverage.test)
        target = command.split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), command


def test_by_hand_commands_are_ones_this_module_knows_how_to_run() -> None:
    lines = [command_of(line) for line in by_hand_lines()]
    assert lines[0] == "make certs"
    assert lines[1].startswith(".venv/bin/python -m examples.digits var/")
    assert lines[2].startswith("make coordinator CONFIG=")
    assert lines[3].startswith("make worker ARGS=")
    # The worker line is repeated per device by changing its index and shard.
    assert "worker-0" in lines[3] and "--shard 0/" in lines[3] and "--key-holder" in lines[3]


# --- running the "by hand" block ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = {".git", ".venv", "var", "stubs-out", "demo-output", "__pycache__"}
    skipped |= {name for name in names if name.endswith("_cache") or name == ".hypothesis"}
    if Path(directory).name == "examples":
        skipped.add("clients")  # other-language clients: large and unused here
    return skipped & set(names)


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository in a temporary folder, sharing this venv without ever rebuilding it."""
    venv = Path(sys.prefix)
    stamp = venv / ".hefl-installed"
    if not stamp.exists():
        pytest.skip(f"{venv} was not built by `make setup` (no {stamp.name}); run make setup")
    copy = tmp_path_factory.mktemp("readme") / "hefl"
    shutil.copytree(ROOT, copy, ignore=_ignore, symlinks=True)
    (copy / ".venv").symlink_to(venv)
    # The Makefile rebuilds the venv when pyproject.toml is newer than the stamp; in the copy
    # that would reinstall hefl from the copy. Make the copy's inputs older than the stamp.
    older = stamp.stat().st_mtime - 60
    for name in ("pyproject.toml", "scripts/bootstrap-venv.sh"):
        os.utime(copy / name, (older, older))
    dry_run = subprocess.run(
        ["make", "-n", "certs"],
        cwd=copy,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "bootstrap-venv" not in dry_run.stdout, dry_run.stdout
    return copy


def _environment(**extra: str) -> dict[str, str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEFL_", "MAKE", "PYTHON")) and k not in {"COORDINATOR", "CONFIG"}
    }
    environment.update(extra)
    return environment


def _run(line: str, cwd: Path, environment: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


@dataclass
class Background:
    """A long-running README command (bash, make, then python) in its own process group."""

    line: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        """SIGTERM to the python process only, as a service manager would; returns make's
        exit code, which is python's (make itself dies by any signal it gets). Whatever goes
        wrong, the whole process group is killed before this returns.
        """
        try:
            if self.process.poll() is None:
                for pid in _descendants(self.process.pid):
                    with contextlib.suppress(OSError, RuntimeError):  # it may exit meanwhile
                        if Path(f"/proc/{pid}/exe").resolve(strict=True).name.startswith("python"):
                            os.kill(pid, signal.SIGTERM)
                self.process.wait(40)
        finally:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def _start(line: str, cwd: Path, environment: dict[str, str], log: Path) -> Background:
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", line],
            cwd=cwd,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that stopping it by its PID reaches make's child too
        )
    return Background(line, process, log)


def _admin(
    copy: Path, environment: dict[str, str], address: str, *argv: str
) -> list[dict[str, object]]:
    """The operator CLI as an operator of this README would run it, with a device identity."""
    result = subprocess.run(
        [
            ".venv/bin/python",
            "-m",
            "coordinator.admin",
            "--address",
            address,
            "--identity",
            "var/certs/workers/worker-0",
            "--json",
            *argv,
        ],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return []
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def background(repo_copy: Path) -> Iterator[list[Background]]:
    started: list[Background] = []
    yield started
    for item in reversed(started):  # workers first, the coordinator last
        with contextlib.suppress(Exception):  # one failed stop must not leak the others
            item.stop()


@pytest.mark.timeout(280)
def test_by_hand_block_trains_a_round_with_five_key_holders(
    repo_copy: Path, background: list[Background]
) -> None:
    copy = repo_copy
    certs, model, coordinator, worker = by_hand_lines()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Written as in the README; only the ports differ, through the settings' own environment
    # overrides (HEFL_SERVER__*, and make's COORDINATOR), so that parallel tests cannot clash.
    environment = _environment(
        HEFL_SERVER__LISTEN_ADDRESS=address,
        HEFL_SERVER__METRICS_ADDRESS="127.0.0.1:0",
        COORDINATOR=address,
    )
    _run(certs, copy, environment)
    assert (copy / "var/certs/ca.pem").exists()
    _run(model, copy, environment)
    assert (copy / "var/digits-initial.model").exists()

    served = _start(coordinator, copy, environment, copy / "coordinator.log")
    background.append(served)
    deadline = time.monotonic() + 60
    while "HEFL_READY" not in served.log.read_text():
        assert served.process.poll() is None, served.log.read_text()
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.2)
    assert f'"grpc_address": "{address}"' in served.log.read_text()

    for index in range(KEY_HOLDERS):
        line = worker.replace("worker-0", f"worker-{index}").replace(
            "--shard 0/", f"--shard {index}/"
        )
        background.append(_start(line, copy, environment, copy / f"worker-{index}.log"))

    published: list[dict[str, object]] = []
    deadline = time.monotonic() + 180
    while not published:
        for item in background:
            assert item.process.poll() is None, f"{item.line}\n{item.log.read_text()}"
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(1)
        rounds = _admin(copy, environment, address, "rounds")
        published = [r for r in rounds if r["outcome"] == "ROUND_OUTCOME_PUBLISHED"]
    assert published[-1]["contributors"] == KEY_HOLDERS

    workers = _admin(copy, environment, address, "workers")
    assert len(workers) == KEY_HOLDERS
    assert all(w["key_holder_capable"] for w in workers)
    assert sorted(int(str(w["committee_index"])) for w in workers) == list(
        range(1, KEY_HOLDERS + 1)
    )
    (status,) = _admin(copy, environment, address, "status")
    assert status["profile"] == "CRYPTO_PROFILE_ONESHOT"
    assert int(str(status["global_version"])) >= 2
    assert float(str(status["epsilon_spent"])) > 0

    for item in reversed(background):
        assert item.stop() == 0, f"{item.line}\n{item.log.read_text()}"
    # Each worker printed one progress line per task.
    for index in range(KEY_HOLDERS):
        log = (copy / f"worker-{index}.log").read_text()
        assert re.search(r"round \d+: uploaded; received ", log), log


def test_make_demo_target_answers_help(repo_copy: Path) -> None:
    """`make demo ARGS=--help`, an option the README names, through the real make target."""
    output = _run("make demo ARGS=--help", repo_copy, _environment(), timeout=120)
    assert "usage: make demo" in output and "--plaintext" in output
