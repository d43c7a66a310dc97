"""The coordinator settings as Markdown tables, from the dataclasses and their docstrings.

``python -m coordinator.config_reference`` rewrites the block between the markers in
docs/configuration.md, so the reference cannot drift from the code (a test checks it).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from pathlib import Path

from coordinator import config as config_module

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _field_docs() -> dict[tuple[str, str], str]:
    """Docstrings written under each dataclass field, keyed by (class, field)."""
    tree = ast.parse(inspect.getsource(config_module))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[(node.name, item.target.id)] = " ".join(following.value.value.split())
    return docs


def markdown_tables() -> str:
    """One table per section: setting, default, meaning."""
    docs = _field_docs()
    defaults = config_module.CoordinatorConfig()
    lines: list[str] = []
    for section_field in dataclasses.fields(defaults):
        section = getattr(defaults, section_field.name)
        lines += [
            "",
            f"### `[{section_field.name}]`",
            "",
            "| setting | default | meaning |",
            "|---|---|---|",
        ]
        for setting in dataclasses.fields(section):
            meaning = docs.get((type(section).__name__, setting.name), "").replace("|", "\\|")
            value = getattr(section, setting.name)
            lines.append(f"| `{section_field.name}.{setting.name}` | `{value!r}` | {meaning} |")
    return "\n".join(lines) + "\n"


def rewrite(doc: Path = DOC) -> bool:
    """Replaces the generated block in ``doc``; returns whether it changed."""
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    updated = f"{head}{BEGIN}\n{markdown_tables()}{END}{tail}"
    if updated == text:
        return False
    doc.write_text(updated)
    return True


if __name__ == "__main__":
    changed = rewrite()
    print("docs/configuration.md " + ("updated" if changed else "already up to date"))
    sys.exit(0)
