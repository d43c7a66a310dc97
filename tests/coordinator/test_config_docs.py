"""docs/configuration.md documents every coordinator setting with its real default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from coordinator.config import CoordinatorConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented_with_its_default() -> None:
    text = DOC.read_text()
    config = CoordinatorConfig()
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        for setting in dataclasses.fields(section):
            row = (
                f"| `{section_field.name}.{setting.name}` | `{getattr(section, setting.name)!r}` |"
            )
            assert row in text, f"docs/configuration.md lacks or misstates {row}"
