"""The package's public names, pinned: what each room's ``__init__`` exports and the console
entry points. A change here is a change of the public surface: update the lists on purpose."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import gateway

EXPORTED = {
    "cli": {
        "COMMANDS",
        "CONFIG_DIR_ENV",
        "STARTUP_FAILURE",
        "USAGE_ERROR",
        "CommandFailed",
        "UsageError",
        "demo_banner",
        "main",
    },
    "control": {"ControlPlane", "Snapshot"},
    "metering": {"Admission", "Amounts", "Meter", "MeterRequest", "Outcome"},
    "wire": {"HeaderLimitExceeded", "NativeTransport"},
}
SCRIPTS = {"gateway": "gateway.cli:main"}
PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def rooms() -> list[str]:
    """Every subpackage of ``gateway`` (``__main__`` is not imported: it runs the command)."""
    return sorted(info.name for info in pkgutil.iter_modules(gateway.__path__) if info.ispkg)


def public_names(room: str) -> set[str]:
    """The names a room's ``__init__`` binds itself (its submodules and ``annotations`` aside)."""
    module = importlib.import_module(f"gateway.{room}")
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }


def test_each_room_exports_what_its_all_lists_and_nothing_by_accident() -> None:
    found = {}
    for room in rooms():
        module = importlib.import_module(f"gateway.{room}")
        listed = getattr(module, "__all__", None)
        if listed is None:
            assert not public_names(room), f"gateway.{room} binds names without an __all__"
            continue
        assert all(hasattr(module, name) for name in listed), room
        found[room] = set(listed)
    assert found == EXPORTED


def test_the_package_names_its_version() -> None:
    assert isinstance(gateway.__version__, str) and gateway.__version__.count(".") == 2


def test_the_console_scripts_are_declared_and_resolve_to_the_cli() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert declared == SCRIPTS
    for target in declared.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert {name: installed.get(name) for name in SCRIPTS} == SCRIPTS


def test_python_dash_m_gateway_runs_the_same_main() -> None:
    source = (Path(gateway.__file__).parent / "__main__.py").read_text()
    assert "from gateway.cli import main" in source and "SystemExit(main())" in source
