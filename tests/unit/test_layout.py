"""The house rules of DESIGN.md that code can check: imports point down only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("drivers", "rules", "bridges")
ENTRY_POINTS = {"gateway/app.py", "gateway/cli.py"}  # the composition root and the command that runs it


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def test_parts_import_only_the_core_and_themselves():
    for path in modules(*PARTS):
        rel = path.relative_to(ROOT)
        own = ".".join(rel.parts[:2]).removesuffix(".py")  # drivers.ocpp, drivers.modbus, bridges.mqtt, ...
        if rel.parts[0] == "rules":
            own = "rules"  # the decisions are one part: the load cap is built on the pure allocator
        for name in imports(path):
            top = name.split(".")[0]
            if top in PARTS:
                if rel.parts[0] == "bridges" and name == "bridges.outbox":
                    continue  # the durable outbox is shared by the bridges that deliver from it (DESIGN.md)
                assert name == own or name.startswith(own + "."), f"{rel} imports {name}: parts never import each other"
            assert not name.startswith(("gateway.app", "gateway.cli", "gateway.web")), f"{rel} imports {name}"


def test_the_core_imports_no_part():
    for path in modules("gateway"):
        rel = str(path.relative_to(ROOT))
        if rel in ENTRY_POINTS:
            continue
        for name in imports(path):
            assert name.split(".")[0] not in PARTS, f"{rel} imports {name}: the core never imports a part"
            if not rel.startswith("gateway/web/"):
                assert not name.startswith("gateway.web"), f"{rel} imports {name}: only the root knows the web"
