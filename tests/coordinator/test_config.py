"""Configuration precedence, coercion and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.__main__ import main
from coordinator.config import ConfigError, build_config, load_config

INSECURE = {"server.insecure": "true"}


def test_precedence_is_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[round]\ngoal_contributors = 20\nmin_contributors = 5\n[federation]\nfederation_id = "f"\n'
    )
    env = {
        "HEFL_ROUND__GOAL_CONTRIBUTORS": "30",
        "HEFL_SERVER__LISTEN_ADDRESS": "0.0.0.0:1",
        "HEFL_SERVER__INSECURE": "true",
    }
    config = load_config(path, env, {"round.goal_contributors": "40"})
    assert config.round.goal_contributors == 40  # flag beats environment beats file
    assert config.round.min_contributors == 5  # from the file
    assert config.server.listen_address == "0.0.0.0:1"  # from the environment
    assert config.federation.federation_id == "f"
    assert config.round.collect_seconds == 20.0  # default


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(
            {"round": {"goal_contributors": "x", "bogus": 1}, "nosuch": {}},
            {"HEFL_FEDERATION__PROFILE": "ckks"},
        )
    message = str(raised.value)
    assert "round.goal_contributors" in message
    assert "round.bogus" in message
    assert "unknown section 'nosuch'" in message


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(
            overrides={
                "federation.profile": "ckks",
                "round.min_contributors": "10",
                "round.goal_contributors": "5",
                "round.over_selection": "0.5",
            }
        )
    message = str(raised.value)
    assert "federation.profile" in message
    assert "goal_contributors" in message
    assert "over_selection" in message


def test_plaintext_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match="allow_plaintext"):
        build_config(overrides={"federation.profile": "plaintext", **INSECURE})
    config = build_config(
        overrides={
            "federation.profile": "plaintext",
            "federation.allow_plaintext": "yes",
            **INSECURE,
        }
    )
    assert config.federation.allow_plaintext


def test_tuple_and_bool_coercion() -> None:
    config = build_config(
        {"federation": {"enrollment_tokens": ["a", "b"]}},
        overrides={"federation.allow_plaintext": "0", **INSECURE},
    )
    assert config.federation.enrollment_tokens == ("a", "b")
    assert config.federation.allow_plaintext is False
    assert build_config(
        overrides={"federation.enrollment_tokens": "x, y", **INSECURE}
    ).federation.enrollment_tokens == ("x", "y")


def test_tls_is_required_unless_insecure_is_explicit() -> None:
    with pytest.raises(ConfigError, match="mutual TLS needs"):
        build_config()
    with pytest.raises(ConfigError, match="conflicts"):
        build_config(overrides={"server.tls_cert": "c.pem", **INSECURE})
    tls = {"server.tls_cert": "c", "server.tls_key": "k", "server.tls_client_ca": "ca"}
    assert build_config(overrides=tls).server.insecure is False


def test_cli_reports_bad_config_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "round.min_contributors=0", "--print-config"]) == 2
    assert "min_contributors" in capsys.readouterr().err
    assert main(["--set", "nonsense"]) == 2


def test_cli_prints_the_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--federation-id", "x", "--set", "server.insecure=true", "--print-config"]) == 0
    assert '"federation_id": "x"' in capsys.readouterr().out
