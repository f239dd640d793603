"""Settings: production refuses to start without keys; `check --deploy` is clean; compose is valid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "FLEET_ENV": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "prod-secret-key-for-the-deploy-check-only-0123456789",
    "FLEET_ENCRYPTION_KEYS": "ZGV2LW9ubHktZmxlZXQtbG9ja2Rvd24ta2V5LTAwMDA=",
    "DJANGO_ALLOWED_HOSTS": "fleet.example.net",
    "FLEET_MANAGEMENT_NETWORKS": "10.20.0.0/16",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "FLEET_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_a_key(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_check_deploy_reports_nothing_in_production():
    result = _manage("check", "--deploy", "--fail-level", "DEBUG", env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_no_management_networks_are_named():
    env = {k: v for k, v in PROD_ENV.items() if k != "FLEET_MANAGEMENT_NETWORKS"}
    result = _manage("check", "--deploy", env=env)
    assert "fleet.W004" in result.stdout + result.stderr


def test_production_requires_two_factor_whatever_the_environment_says():
    code = "from django.conf import settings; print(settings.FLEET_REQUIRE_2FA)"
    result = _manage("shell", "-c", code, env={**PROD_ENV, "FLEET_REQUIRE_2FA": "false"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
    development = _manage("shell", "-c", code, env={"FLEET_REQUIRE_2FA": "false"})
    assert development.stdout.strip().splitlines()[-1] == "False"


def test_development_needs_no_configuration():
    result = _manage("check", env={})
    assert result.returncode == 0, result.stderr


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) where it works, else Debian's `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_docker_compose_file_is_valid():
    command = _compose_command() or []
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SECRET_KEY": "k" * 60, "FLEET_ENCRYPTION_KEYS": PROD_ENV["FLEET_ENCRYPTION_KEYS"]},
    )
    assert result.returncode == 0, result.stderr


def test_the_image_runs_in_production_by_default():
    # a container started without FLEET_ENV must refuse to run without its keys, not fall back to DEBUG
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "FLEET_ENV=production" in env.split()
