"""The package's shape: no import cycle, and the Pi side never reaches the desk side.

The imports are read from the source (``ast``), module-level and function-level alike, and
those under ``if TYPE_CHECKING:`` too: an import hidden inside a function, or kept for the type
checker only, to dodge a cycle is still a cycle of the design.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "station"
DESK = "station.desk"
DESK_ONLY = ("rich", "amqtt")       # the [desk] extra: never imported by the Pi side


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PI_SIDE = sorted(m for m in MODULES if m != DESK and not m.startswith(DESK + "."))


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imports_of(module: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its source."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    here = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules
    return {name for name in found if name in MODULES and name != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            # A package's __init__ importing its own submodule is how packages work.
            if state.get(n) == 1 and not m.startswith(n + "."):
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_walk_sees_function_level_imports() -> None:
    # cli imports its subcommands' modules inside functions: the walk must see them, or it
    # would miss exactly the cycles it is there for.
    assert "station.service" in GRAPH["station.cli"]
    assert "station.protocol" in GRAPH["station.desk.demo"]


def test_no_import_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


@pytest.mark.parametrize("module", PI_SIDE)
def test_pi_side_never_imports_the_desk(module: str) -> None:
    desk = sorted(n for n in GRAPH[module] if n == DESK or n.startswith(DESK + "."))
    assert not desk, f"{module} (Pi side) imports {desk}"


def test_pi_side_imports_without_the_desk_dependencies() -> None:
    """Importing every Pi-side module loads neither the desk package nor rich or amqtt."""
    code = (f"import importlib, sys\nfor m in {PI_SIDE!r}:\n    importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {DESK_ONLY!r}"
            f" or m == {DESK!r} or m.startswith({DESK + '.'!r}))\nprint(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "", f"the Pi side loaded {out.stdout.strip()}"


# Modules only the command line or a rare path needs: config's did-you-mean (difflib), a
# display time zone other than UTC (zoneinfo), find_library (ctypes.util runs ldconfig). The
# running station must not load them (docs/PERFORMANCE.md: idle memory, start → online).
RUN_NEVER_LOADS = ("difflib", "zoneinfo", "ctypes.util")


def test_run_path_leaves_rare_modules_unloaded(tmp_path: Path) -> None:
    """What ``polres-station run`` imports, with a config loaded and the clock checked."""
    cfg = tmp_path / "station.yaml"
    cfg.write_text("station: {id: s-1, region: r-1}\nbroker: {host: 127.0.0.1, port: 1}\n"
                   "gpio: {pin_factory: mock}\n"
                   f"storage: {{path: {tmp_path / 'state.db'}}}\n"
                   "time: {display_tz: UTC}\n")
    code = ("import sys\n"
            "import station.cli, station.service, station.outbox, station.systemd, "
            "station.reporting\n"
            "from station.config import load_config\n"
            "from station.heartbeat import clock_synced\n"
            f"c = load_config({str(cfg)!r}, refuse_placeholders=True)\n"
            "c.time.zone(); clock_synced()\n"
            f"print(','.join(m for m in {RUN_NEVER_LOADS!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"the run path loaded {out.stdout.strip()}"
