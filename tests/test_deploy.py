"""The deployment examples in ``deploy/`` say only what babelwire understands: commands the CLI
parses and ``BABELWIRE_`` variables that are settings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from aggregator.settings import Settings
from main import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
FIELDS = {f"BABELWIRE_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_every_role_with_commands_the_cli_parses() -> None:
    services = _compose()["services"]
    commands = {name: s["command"] for name, s in services.items() if "command" in s}
    assert {c[0] for c in commands.values()} == {"migrate", "worker", "serve"}
    assert "--no-scheduler" in commands["api"]
    for command in commands.values():
        build_parser().parse_args(command)
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_and_systemd_set_only_real_settings() -> None:
    names: set[str] = set()
    for service in _compose()["services"].values():
        names |= {k for k in service.get("environment", {}) if k.startswith("BABELWIRE_")}
    for line in (DEPLOY / "systemd" / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("=", 1)[0])
    assert "BABELWIRE_DATABASE_URL" in names and "BABELWIRE_CURSOR_SECRET" in names
    assert names <= FIELDS, names - FIELDS


def test_systemd_units_start_commands_the_cli_parses() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == [
        "babelwire-api@.service",
        "babelwire-migrate.service",
        "babelwire-worker@.service",
    ]
    for unit in units:
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit.read_text(), re.M)
        argv = shlex.split(exec_start.replace("%i", "8001"))
        assert argv[1] == "main.py"
        build_parser().parse_args(argv[2:])
