"""The console's dependency direction: widgets and screens reach the core only through the
service layer, and the core never imports Textual or Rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from import_graph import import_statements

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "appliance"
ALLOWED = ("appliance.service", "appliance.errors", "appliance.home", "appliance.tui")
UI_LIBRARIES = ("textual", "rich")


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module `source` (the module `module`) imports."""
    names: set[str] = set()
    for base, name in import_statements(source, module):
        names.update([base, f"{base}.{name}"] if name else [base])
    return names


def forbidden_core_imports(source: str, module: str) -> set[str]:
    """appliance.* imports that bypass the service layer."""
    found = set()
    for name in imported_modules(source, module):
        core = name == "appliance" or name.startswith("appliance.")
        if core and not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED):
            found.add(name)
    return found


def _modules(root: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts)
        out.append((name.removesuffix(".__init__"), path))
    return out


def test_console_modules_import_only_the_service_layer() -> None:
    """No module under appliance/tui imports appliance.policy, .doctor, .audit and so on."""
    modules = _modules(PACKAGE / "tui")
    assert len(modules) >= 10
    bad = {name: sorted(forbidden_core_imports(path.read_text(), name))
           for name, path in modules}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_import_check_catches_a_core_import() -> None:
    """The checker flags direct, from- and relative imports of core modules."""
    name = "appliance.tui.widgets.x"
    assert forbidden_core_imports("from appliance.policy import Policy", name) == {
        "appliance.policy", "appliance.policy.Policy"}
    assert forbidden_core_imports("import appliance.audit", name) == {"appliance.audit"}
    assert forbidden_core_imports("from ...doctor import run_checks", name) == {
        "appliance.doctor", "appliance.doctor.run_checks"}
    assert forbidden_core_imports("from appliance import keystore", name) == {
        "appliance", "appliance.keystore"}
    assert not forbidden_core_imports("from appliance.service.policy import diff_policies\n"
                                      "from appliance.errors import ApplianceError\n"
                                      "from ..screens.base import Page", name)


def test_core_modules_never_import_textual_or_rich() -> None:
    """No module outside appliance/tui imports Textual or Rich (checked in the source)."""
    offenders = {}
    for name, path in _modules(PACKAGE):
        if name.startswith("appliance.tui"):
            continue
        ui = {m for m in imported_modules(path.read_text(), name)
              if m.split(".")[0] in UI_LIBRARIES}
        if ui:
            offenders[name] = sorted(ui)
    assert offenders == {}


def test_importing_the_core_loads_no_textual() -> None:
    """Importing every core module (and the CLI) in a fresh interpreter loads no Textual.

    Rich is checked in the source above only: third-party libraries (structlog, presidio)
    import Rich themselves when it is installed."""
    code = (
        "import importlib, pkgutil, sys, appliance\n"
        "names = [m.name for m in pkgutil.walk_packages(appliance.__path__, 'appliance.')\n"
        "         if not m.name.startswith(('appliance.tui', 'appliance.__main__'))]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "import appliance.cli.main as cli\n"
        "cli.build_parser()\n"
        "print(len(names), sorted({m.split('.')[0] for m in sys.modules} & {'textual'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) >= 20
    assert loaded.strip() == "[]"
