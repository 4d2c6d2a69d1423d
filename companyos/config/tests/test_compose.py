"""docker-compose.yml and .env.example are valid and agree with settings.py.

No Docker engine runs here, so the compose file is parsed and checked for
what `docker compose up` relies on: services, image versions, health checks,
start order, persistence, profiles, and the app's configuration.
"""

import re
from pathlib import Path

import pytest
import yaml

from companyos.config.tests.test_settings import settings_variables

ROOT = Path(__file__).resolve().parents[3]
VARIABLE_LINE = re.compile(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def example_lines() -> list[str]:
    return [line.strip() for line in (ROOT / ".env.example").read_text().splitlines()]


def example_variables() -> dict[str, bool]:
    """Each variable in .env.example -> whether it is required (an uncommented line)."""
    found = {}
    for line in example_lines():
        if match := VARIABLE_LINE.fullmatch(line):
            found[match[2]] = match[1] is None
    return found


APP_SERVICES = ("web", "worker", "scheduler")


def test_compose_has_the_databases_the_app_services_and_the_optional_tools(services):
    assert set(services) == {"postgres", "redis", *APP_SERVICES, "pgadmin", "redisinsight"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert all(services[name]["build"] == "." for name in APP_SERVICES)


def test_tools_run_only_under_the_tools_profile(services):
    assert services["pgadmin"]["profiles"] == ["tools"]
    assert services["redisinsight"]["profiles"] == ["tools"]
    assert all("profiles" not in services[name] for name in ("postgres", "redis", *APP_SERVICES))


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("postgres", "pg_isready"),
        ("redis", "redis-cli"),
        ("web", "/healthz"),
        ("worker", "procrastinate healthchecks"),
        ("scheduler", "procrastinate healthchecks"),
    ],
)
def test_services_have_health_checks(services, service, probe):
    check = services[service]["healthcheck"]

    assert probe in " ".join(check["test"])
    assert {"interval", "timeout", "retries"} <= set(check)


def test_web_starts_once_the_databases_are_healthy_and_the_others_once_web_has_migrated(services):
    assert services["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("worker", "scheduler"):
        assert services[name]["depends_on"] == {"web": {"condition": "service_healthy"}}


def test_web_serves_the_asgi_application(services):
    assert "companyos.config.asgi:application" in " ".join(services["web"]["command"])
    assert "companyos.config.asgi:application" in (ROOT / "Dockerfile").read_text()


def test_worker_and_scheduler_run_their_commands_and_the_worker_can_be_scaled(services):
    worker, scheduler = services["worker"], services["scheduler"]
    assert worker["command"][:3] == ["python", "manage.py", "run_worker"]
    assert scheduler["command"] == ["python", "manage.py", "run_scheduler"]
    # --scale refuses services with a fixed container name or host port.
    assert not {"container_name", "ports"} & set(worker)
    # SIGTERM lets running jobs finish before Docker's SIGKILL.
    assert worker["stop_grace_period"] == "60s"


def test_app_services_share_one_environment(services):
    assert services["web"]["environment"] == services["worker"]["environment"] == services["scheduler"]["environment"]


def test_redis_persists_to_an_append_only_file_on_a_volume(services):
    command = services["redis"]["command"]

    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])


def test_every_named_volume_is_declared_and_used(compose, services):
    used = {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }

    assert used == set(compose["volumes"])
    assert {"postgres-data", "redis-data"} <= used


def test_app_environment_is_documented_in_env_example(services):
    documented = example_variables()
    app_env = set(services["web"]["environment"])

    assert app_env - set(documented) == set()
    assert {name for name, required in documented.items() if required} - app_env == set()


def test_required_secrets_have_no_default_in_compose(services):
    env = services["web"]["environment"]

    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS"):
        assert re.fullmatch(rf"\$\{{{name}:\?.+\}}", env[name]), env[name]
    assert env["DEBUG"] == "${DEBUG:-False}"


def test_env_example_documents_exactly_the_settings_read_by_settings_py():
    documented, read = set(example_variables()), settings_variables()

    assert read - documented == set(), "add these to .env.example (see its header)"
    assert documented - read == set(), "settings.py no longer reads these"


def test_env_example_gives_every_variable_a_comment_line_above_it():
    lines = example_lines()
    for index, line in enumerate(lines):
        if VARIABLE_LINE.fullmatch(line):
            above = lines[index - 1]
            assert above.startswith("#") and not VARIABLE_LINE.fullmatch(above.lstrip("# ")), line


def test_env_example_is_production_safe():
    active = {m[2]: m[3] for line in example_lines() if (m := VARIABLE_LINE.fullmatch(line)) and not m[1]}

    assert "DEBUG" not in active  # the default, False, applies
    assert active["SECRET_KEY"] == "" and active["FIELD_ENCRYPTION_KEYS"] == ""  # no shared secret to copy
    assert "# DEBUG=False" in example_lines()
