"""One session per task. Each installs what it needs, Debian packages included."""

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent


def install(session: nox.Session, extras: str = "") -> None:
    session.run("bash", str(ROOT / "scripts" / "install-system-deps.sh"), external=True)
    session.install("-e", f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against the real kernel (run as root)."""
    install(session, "[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def bench(session: nox.Session) -> None:
    """The default benchmark: a run into the dataset data/results/, its report in data/reports/."""
    install(session)
    session.run("mapbench", "bench", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "mapbench", "tests", "noxfile.py", "data/fixtures")
