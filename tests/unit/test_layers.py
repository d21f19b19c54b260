"""The layers of ../shared/STYLE.md, checked on what Python really loads.

import-linter (``lint-imports`` in CI) checks the import graph statically; these tests check
the same promise at run time: a pure core imported alone, in a fresh interpreter, loads no
Ray, no SQLite, no asyncio and no sockets, however indirectly. A core also reads no clock,
environment or thread of its own (checked on its own imports), and nothing in the rule
language or the cores hands text to ``eval``/``exec``/``compile``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The kernel and the pure cores (STYLE layers 1 and 2, without store/).
CORES = [
    "segd.errors",
    "segd.clock",
    "segd.templates",
    "segd.config",
    "segd.rules",
    "segd.wire.protocol",
    "actors.records",
    "actors.placement",
    "actors.aggregates",
    "actors.model",
    "actors.user",
    "actors.compiled.engine",
    "actors.shard.core",
    "actors.shard.snapshot",
    "actors.dispatch.core",
    "actors.dispatch.throttle",
    "actors.dispatch.report",
]
#: Nothing a core may load, even indirectly.
FORBIDDEN = ["ray", "sqlite3", "sqlite_utils", "asyncio", "socket"]
#: What a core may not import itself: it is handed time, environment and threads.
NOT_DIRECTLY = {"time", "os", "threading", "datetime"}
#: What some cores need of those, and why: quiet hours are computed in the user's zone; the
#: clock is shared by the commit thread and the event loop, so it holds a lock.
ALLOWED = {"actors.dispatch.throttle": {"datetime"}, "segd.clock": {"threading"}}


def _loaded_by(module: str) -> list[str]:
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _source_files(module: str) -> list[Path]:
    base = ROOT.joinpath(*module.split("."))
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


@pytest.mark.parametrize("module", CORES)
def test_a_core_imported_alone_loads_no_io_or_ray(module):
    assert _loaded_by(module) == []


@pytest.mark.parametrize("module", CORES)
def test_a_core_reads_no_clock_environment_or_thread_of_its_own(module):
    allowed = ALLOWED.get(module, set())
    for path in _source_files(module):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert not (imported & NOT_DIRECTLY) - allowed, path


#: The one module allowed to compile and run text: the model compiler, whose text is segd's own
#: (SPEC section 4: generated from the checked syntax tree, every config name and literal bound
#: by reference). tests/unit/test_compiled_source.py checks that no config text reaches it.
CODE_GENERATOR = ROOT / "actors" / "compiled" / "codegen.py"


def _calls(path: Path) -> set[str]:
    return {
        n.func.id
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


@pytest.mark.parametrize("package", ["segd/rules", "actors"])
def test_no_text_reaches_eval_exec_or_compile(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        if path == CODE_GENERATOR:
            continue
        assert not _calls(path) & {"eval", "exec", "compile"}, path


def test_the_code_generator_compiles_and_runs_but_never_evals():
    assert _calls(CODE_GENERATOR) & {"eval", "exec", "compile"} == {"exec", "compile"}
