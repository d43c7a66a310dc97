"""docs/configuration.md documents every coordinator setting with its real default."""

from __future__ import annotations

from coordinator.config_reference import BEGIN, DOC, END, markdown_tables


def test_the_reference_in_the_docs_is_generated_from_the_code() -> None:
    text = DOC.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == markdown_tables().strip(), (
        "docs/configuration.md is stale: run python -m coordinator.config_reference"
    )
    assert "`server.insecure` | `False`" in block
