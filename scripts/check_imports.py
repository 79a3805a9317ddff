"""Check the package's import graph: no cycle, and the core imports no engine, broker or database.

    python scripts/check_imports.py            # prints the graph between rooms; exit 1 on a problem

Reads the source with ``ast`` (imports nothing). Two graphs:

- modules, module-level imports only (what runs at import time): must have no cycle;
- rooms (api, core, transports, stores, integrations.<engine>, deploy, cli, and the public entry
  points), every import including those inside functions: must have no cycle either, and follow
  the rules: ``core`` and ``api`` never import an integration, nor Dask, Ray, torch, a broker or
  database client.
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["flowcept_dist", "scheduler_plugins", "worker_plugins", "torch_hooks"]
HEAVY = {"dask", "distributed", "ray", "torch", "redis", "confluent_kafka", "pymongo", "lmdb", "mlflow",
         "tensorboard", "pandas", "numpy"}
#: room -> rooms and third-party packages it must never import (at any level)
FORBIDDEN = {
    "core": {"api", "integrations", "cli", "deploy"} | HEAVY - {"lmdb"},
    "api": {"integrations", "cli", "deploy"} | HEAVY - {"pandas"},
}


def modules() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def room(mod: str) -> str:
    parts = mod.split(".")
    if parts[0] != "flowcept_dist":
        return parts[0]
    if len(parts) == 1:
        return "flowcept_dist"
    if parts[1] == "integrations" and len(parts) > 2:
        return f"integrations.{parts[2]}"
    if parts[1] in ("dask", "ray"):  # public aliases
        return f"flowcept_dist.{parts[1]}"
    return parts[1]


def imports(path: str, mod: str, is_pkg: bool):
    """Yield (imported module, at module level?) for every import in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    toplevel = set(map(id, tree.body))
    for node in ast.walk(tree):
        top = id(node) in toplevel
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                yield base, top
                yield f"{base}.{a.name}", top  # "from pkg import module"


def main() -> int:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    rooms: dict[str, set[str]] = {}
    problems = []
    for mod, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        r = room(mod)
        for target, top in imports(path, mod, is_pkg):
            first = target.split(".")[0]
            if target in mods:
                if top and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
                tr = room(target)
                if tr != r:
                    rooms.setdefault(r, set()).add(tr)
                    if tr.split(".")[0] in FORBIDDEN.get(r, ()):
                        problems.append(f"{mod} imports {target} ({r} must not import {tr})")
            elif first in FORBIDDEN.get(r, ()):
                problems.append(f"{mod} imports {target} ({r} must not import {first})")
    # cycles among module-level imports (depth-first search)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                problems.append("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # cycles between rooms (any import): a room may only lean on rooms below it
    rstate: dict[str, int] = {}
    rstack: list[str] = []

    def rvisit(r: str) -> None:
        rstate[r] = 1
        rstack.append(r)
        for n in sorted(rooms.get(r, ())):
            if rstate.get(n) == 1:
                problems.append("room cycle: " + " -> ".join(rstack[rstack.index(n):] + [n]))
            elif n not in rstate:
                rvisit(n)
        rstack.pop()
        rstate[r] = 2

    for r in sorted(rooms):
        if r not in rstate:
            rvisit(r)
    print(f"{len(mods)} modules, {sum(map(len, graph.values()))} module-level imports between them")
    print("rooms and the rooms they import (any level):")
    for r in sorted(rooms):
        print(f"  {r:<26} -> {', '.join(sorted(rooms[r]))}")
    for p in problems:
        print("PROBLEM:", p)
    print("no cycle, no forbidden import" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
