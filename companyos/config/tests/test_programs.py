import pytest

from companyos.config.tests.programs import require_program

MISSING = "/nonexistent/companyos-test-program"


def test_a_missing_program_skips_the_test_and_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y pgbouncer"):
        require_program(MISSING, "pgbouncer")


def test_under_ci_a_missing_program_fails_the_test(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"Debian's chromium is not installed"):
        require_program(MISSING, "chromium")


def test_a_program_that_is_there_lets_the_test_run(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    program = tmp_path / "program"
    program.touch()
    require_program(str(program), "anything")
