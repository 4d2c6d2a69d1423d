"""Schemathesis against a live uvicorn server: every operation, valid token, no 5xx, no schema violations."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from companyos.api.tests.conftest import member_with_token, populate
from companyos.api.v1 import api
from companyos.foundation.tests.support import child_env, uvicorn_server

# Examples per operation and phase: ~40 operations finish in a minute or two on two cores.
EXAMPLES = 25

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(org_a, tmp_path: Path):
    objects = populate(org_a)
    token = member_with_token(org_a)
    # Known objects for the write paths, so the generated requests reach the services, not only 404s.
    (tmp_path / "schemathesis.toml").write_text(
        "[parameters]\n"
        f'"path.organization" = "{org_a.slug}"\n'
        f'"path.task_id" = "{objects["tasks"].pk}"\n'
        f'"path.post_id" = "{objects["posts"].pk}"\n'
        f'"path.component_id" = "{objects["components"].pk}"\n'
    )
    with uvicorn_server(env=child_env(API_RATE_LIMIT_PER_MINUTE="0", LOG_LEVEL="WARNING")) as port:
        run = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [
                sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"),
                "run", f"http://127.0.0.1:{port}/api/v1/schema/",
                "--header", f"Authorization: Bearer {token.raw}",
                "--checks", CHECKS, "--max-examples", str(EXAMPLES), "--seed", "15",
                "--suppress-health-check", "all", "--generation-database", "none", "--no-color",
                # One worker: hypothesis describing strategies from two threads at once
                # tripped CPython 3.11's AST recursion check (a runtime error, not a finding).
                "--phases", "examples,coverage,fuzzing", "--workers", "1",
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    selected, tested = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", run.stdout).groups()
    operations = sum(len(methods) for methods in api.get_openapi_schema(path_prefix="/api/v1/")["paths"].values())
    assert selected == tested == str(operations), run.stdout[-3000:]
