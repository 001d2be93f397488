"""Dockerfile and docker-compose.yml stay true to the code, checked by reading them (the real
deployment on a Docker engine is ``test_compose_deployment.py``)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from config.settings import env_names

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def cli_commands() -> set[str]:
    from typer.main import get_command

    from sync.cli import app

    group = get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def ordersync_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if s.get("image", "").startswith("ordersync")
            or "build" in s}


def test_every_service_command_is_a_real_subcommand():
    services = ordersync_services(compose())
    assert {"migrate", "poller", "worker"} <= set(services)
    for name, svc in services.items():
        cmd = svc["command"]
        assert cmd[0] in cli_commands(), f"{name}: {cmd[0]} is not an ordersync command"


def env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines as docker compose reads an env file (later lines win)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value
    return out


def test_every_environment_name_is_a_setting():
    known = set(env_names())
    for name, svc in ordersync_services(compose()).items():
        for var in svc.get("environment", {}):
            assert var in known, f"{name}: {var} is not a Settings name"
    for var in env_file(ROOT / "docker-compose.env"):
        assert var in known, f"docker-compose.env: {var} is not a Settings name"
    example = (ROOT / ".env.example").read_text()
    for var in re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, re.M):
        assert var in known, f".env.example: {var} is not a Settings name"


def test_env_example_works_as_shipped():
    """`cp .env.example .env`: the only live lines are the credentials to fill in; nothing
    else overrides a default or what compose sets for its own services (a blank
    ORDERSYNC_STATUS_MAP once made the poller read "." as the status map)."""
    live = env_file(ROOT / ".env.example")
    assert set(live) == {"SHOPWIRED_API_KEY", "SHOPWIRED_API_SECRET", "WIREDPLUS_API_USER",
                         "WIREDPLUS_API_KEY"}
    assert all(v == "" for v in live.values())


def test_compose_settings_come_from_env_files_and_dotenv_wins():
    """DATABASE_URL/REDIS_URL/ORDERSYNC_LOG_FORMAT come from docker-compose.env, listed before
    .env, so the user's .env overrides them; no service's `environment` silently does."""
    for name, svc in ordersync_services(compose()).items():
        assert svc["env_file"] == ["docker-compose.env", ".env"], name
        for var in ("DATABASE_URL", "REDIS_URL", "ORDERSYNC_LOG_FORMAT"):
            assert var not in (svc.get("environment") or {}), f"{name} overrides {var}"
        assert svc["restart"] in ("unless-stopped", "no"), name
        assert "host.docker.internal:host-gateway" in svc["extra_hosts"], name


def test_dependencies_and_healthchecks_wire_up():
    doc = compose()
    services = doc["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    assert services["poller"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for vol in ("pgdata", "redisdata"):
        assert vol in doc["volumes"]


def test_compose_urls_point_at_compose_services():
    env = env_file(ROOT / "docker-compose.env")
    assert "@postgres:5432" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["ORDERSYNC_LOG_FORMAT"] == "json"
    services = compose()["services"]
    assert services["migrate"]["healthcheck"] == {"disable": True}  # exited ≠ unhealthy
    for name in ("poller", "worker"):
        assert "profiles" not in services[name] and services[name]["restart"] == "unless-stopped"


def test_dockerfile_entrypoint_and_healthcheck_run_here():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["ordersync"\]', text, re.M)
    assert re.search(r"^USER ordersync", text, re.M)
    assert "constraints.txt" in text
    cmd = re.search(r'^CMD \["(\w+)"\]', text, re.M)
    assert cmd and cmd.group(1) in cli_commands()
    hc = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert hc
    args = yaml.safe_load(hc.group(1))
    assert args[0] == "ordersync" and args[1] in cli_commands()
    r = subprocess.run([sys.executable, "-m", "sync", *args[1:], "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for svc in compose()["services"].values():
        test = (svc.get("healthcheck") or {}).get("test")
        if test and test[1] == "ordersync":
            r = subprocess.run([sys.executable, "-m", "sync", *test[2:], "--help"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"{shlex.join(test)}: {r.stderr}"


def test_dockerfile_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for pkg in ("sync", "workers", "config"):
        assert f"COPY {pkg} ./{pkg}" in text


def test_the_installed_package_carries_migrations_and_status_maps(tmp_path: Path) -> None:
    """The image installs with `pip install .` (not editable): everything the app reads at
    run time must be inside the wheel."""
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("ordersync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("config/status_map.toml", "config/elasticpath_status_map.toml",
                   "sync/ledger/migrations/env.py",
                   "sync/ledger/migrations/versions/0001_initial.py", "workers/app.py"):
        assert needed in names, needed


def _port_mapping(svc: dict[str, Any]) -> tuple[str, int, int, int]:
    """``(host ip, host port, container port, --port)`` of a single-port service."""
    cmd = svc["command"]
    flag = int(cmd[cmd.index("--port") + 1])
    (mapping,) = svc["ports"]
    host_ip, host_port, container = str(mapping).split(":")
    return host_ip, int(host_port), int(container), flag


def test_each_source_has_its_own_webhook_receiver():
    """`webhook` serves ShopWired; `webhook-elasticpath` serves the EP route, configured like
    `poller-elasticpath`, on its own host port. Each needs its secret to start, so each has
    its own profile (a plain `up -d` never starts a receiver that would restart-loop)."""
    from config.settings import Settings
    from sync.webhook import WEBHOOK_PATHS

    services = compose()["services"]
    sw, ep, ep_poller = (services["webhook"], services["webhook-elasticpath"],
                         services["poller-elasticpath"])
    assert sw["profiles"] == ["webhook"]
    assert ep["profiles"] == ["elasticpath-webhook"]
    assert ep_poller["profiles"] == ["elasticpath"]
    assert sw["command"][0] == ep["command"][0] == "webhook"
    assert ep["env_file"] == ep_poller["env_file"]
    for var in ("ORDERSYNC_SOURCE", "ORDERSYNC_STORE"):
        assert ep["environment"][var] == ep_poller["environment"][var], var
    assert ep["depends_on"] == sw["depends_on"]
    host_ports = set()
    for name, svc in (("webhook", sw), ("webhook-elasticpath", ep)):
        host_ip, host_port, container, flag = _port_mapping(svc)
        assert host_ip == "127.0.0.1" and container == flag, name
        assert f"http://127.0.0.1:{flag}/healthz" in " ".join(svc["healthcheck"]["test"]), name
        host_ports.add(host_port)
    assert len(host_ports) == 2, "both receivers publish the same host port"
    routes = {}
    for name, svc in (("webhook", sw), ("webhook-elasticpath", ep)):
        env = {k: v for k, v in (svc.get("environment") or {}).items()
               if k.startswith("ORDERSYNC_")}
        settings = Settings(**env)
        routes[name] = (WEBHOOK_PATHS[settings.source], settings.webhook_secret()[0])
    assert routes == {
        "webhook": ("/webhooks/shopwired", "SHOPWIRED_WEBHOOK_SECRET"),
        "webhook-elasticpath": ("/webhooks/elasticpath", "ELASTICPATH_WEBHOOK_SECRET"),
    }
    assert ep["environment"]["ORDERSYNC_STORE"] == Settings(
        ORDERSYNC_SOURCE="elasticpath").store
