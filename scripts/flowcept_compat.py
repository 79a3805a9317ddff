"""Run Flowcept 1.0.3's own unit tests and examples against flowcept_dist, with only the imports renamed.

    .venv/bin/python scripts/flowcept_compat.py              # downloads the sdist with pip, prints a table
    .venv/bin/python scripts/flowcept_compat.py --src DIR    # an unpacked flowcept-1.0.3 source tree
    .venv/bin/python scripts/flowcept_compat.py --only tests # or: examples

Nothing of Flowcept is kept in this repository: the script fetches the source distribution with
``pip download flowcept==1.0.3 --no-deps --no-binary :all:`` into a cache directory, copies its
``tests/`` and ``examples/`` into a scratch directory, and rewrites import lines only:

- ``from flowcept... import`` / ``import flowcept...`` -> ``flowcept_dist`` (also inside strings such as
  ``python -c 'from flowcept import Flowcept; ...'``); ``src.flowcept`` -> ``flowcept_dist``;
  ``import flowcept`` -> ``import flowcept_dist as flowcept`` (the code then says ``flowcept.configs``);
- Flowcept's Dask adapter (``FlowceptDaskWorkerAdapter``) is flowcept_dist's worker plugin under that name.

Each test file runs in its own pytest process (``--timeout`` per test) with ``HOME`` set to an empty
scratch directory (no settings file: flowcept_dist's defaults) unless ``--keep-home``. Then Flowcept's
offline suite (its ``safeoffline`` tests) runs with a Flowcept settings file in ``~/.flowcept/``: its
sample settings with the full-offline profile (as Flowcept's offline CI job does). Examples run from
their own directory with a time limit, with the environment Flowcept's example runner gives them;
an example passes when it exits 0 and prints no line containing "error" (that runner's rule).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

VERSION = "1.0.3"

#: the unit tests of Flowcept's public API and its Dask adapter (39 tests)
TESTS = [
    "tests/api/flowcept_api_test.py",
    "tests/instrumentation_tests/flowcept_explicit_tasks_test.py",
    "tests/instrumentation_tests/flowcept_loop_test.py",
    "tests/instrumentation_tests/flowcept_task_decorator_test.py",
    "tests/adapters/test_dask.py",
    "tests/adapters/test_dask_with_context_mgmt.py",
    "tests/misc_tests/log_test.py",
]
#: the examples Flowcept's CI runs (.github/workflows/run_examples.sh), without the LLM one (8)
EXAMPLES = [
    "unmanaged/simple_task2.py",
    "instrumented_simple_example.py",
    "instrumented_loop_example.py",
    "distributed_consumer_example.py",
    "dask_example.py",
    "mlflow_example.py",
    "single_layer_perceptron_example.py",
    "unmanaged/main.py",
]
#: Flowcept's offline suite (``make tests-offline``: the ``safeoffline`` tests) of the files above
OFFLINE_TESTS = [p for p in TESTS if "instrumentation_tests" in p]
#: the offline profile Flowcept's CI applies (``flowcept --config-profile full-offline``) to its sample settings
OFFLINE_PROFILE = {"project.db_flush_mode": "offline", "project.dump_buffer.enabled": True, "mq.enabled": False,
                   "kv_db.enabled": False, "databases.mongodb.enabled": False, "databases.lmdb.enabled": False}

#: also reported, not counted in the two numbers above
EXTRA_EXAMPLES = ["start_here.py", "convergence_loop_example.py"]
#: environment Flowcept's own example runner sets for an example (run_examples.sh)
EXAMPLE_ENV = {"unmanaged/simple_task2.py": {"FLOWCEPT_USE_DEFAULT": "true"}}

_IMPORT_LINE = re.compile(r"^\s*(from|import)\s+(src\.)?flowcept\b")
_NAME = re.compile(r"(?<![\w.])(?:src\.)?flowcept(?![\w])")


def rename_imports(text: str) -> str:
    """Rewrite import statements (and ``from flowcept import`` inside strings); nothing else."""
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if re.match(r"import\s+flowcept\s*$", stripped):
            line = line.replace("import flowcept", "import flowcept_dist as flowcept", 1)
        elif _IMPORT_LINE.match(line):
            head, sep, rest = line.partition(" import ")
            if head.lstrip().startswith("from"):
                line = _NAME.sub("flowcept_dist", head) + sep + rest
            else:
                line = _NAME.sub("flowcept_dist", line)
        elif "from flowcept import" in line or "from flowcept." in line:
            line = re.sub(r"from (?:src\.)?flowcept(?=[ .])", "from flowcept_dist", line)
        out.append(line)
    return "".join(out)


def fetch_source(cache: str) -> str:
    root = os.path.join(cache, f"flowcept-{VERSION}")
    if os.path.isdir(os.path.join(root, "tests")):
        return root
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"flowcept=={VERSION}", "--no-deps",
                    "--no-binary", ":all:", "-d", cache, "-q"], check=True)
    with tarfile.open(os.path.join(cache, f"flowcept-{VERSION}.tar.gz")) as tf:
        tf.extractall(cache, filter="data")
    return root


def prepare(src: str, dest: str) -> None:
    for folder in ("tests", "examples", "docs"):
        shutil.copytree(os.path.join(src, folder), os.path.join(dest, folder))
    for dirpath, _, files in os.walk(dest):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                new = rename_imports(text)
                if new != text:
                    with open(path, "w", encoding="utf-8") as fh:
                        fh.write(new)


def _env(home: str | None) -> dict:
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = home
        os.makedirs(home, exist_ok=True)
    for name in list(env):
        if name.startswith("FLOWCEPT_") and name != "FLOWCEPT_SETTINGS_PATH":
            del env[name]
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
    # examples start "python ..." subprocesses: the interpreter running this script
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def run_tests(work: str, home: str | None, timeout: int, verbose: bool, files=None,
              marker: str | None = None) -> list[tuple[str, str, str]]:
    """(test id, outcome, short reason) for every test of ``files`` (default TESTS)."""
    results = []
    for path in files or TESTS:
        report = os.path.join(work, "report.txt")
        cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--timeout={timeout}",
               "--tb=line", "-o", "addopts=", path] + (["-m", marker] if marker else [])
        proc = subprocess.run(cmd, cwd=work, env=_env(home), capture_output=True, text=True)
        with open(report, "w") as fh:
            fh.write(proc.stdout + proc.stderr)
        if verbose:
            print(proc.stdout[-4000:], proc.stderr[-2000:])
        got = _parse_summary(proc.stdout, path)
        if marker and len(got) == 1 and got[0][1] == "ERROR" and "deselected" in got[0][2]:
            got = []  # no test of this file carries the marker
        if len(got) == 1 and got[0][0] == path and got[0][1] == "ERROR":
            # the file did not import: every test in it counts as an error
            got = [(f"{path}::{name}", "ERROR", got[0][2]) for name in _test_names(os.path.join(work, path))]
        results.extend(got)
    return results


def _test_names(path: str) -> list[str]:
    """Test functions and methods of a file, read without importing it."""
    import ast

    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef):
            names += [f"{node.name}::{n.name}" for n in node.body
                      if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    return names or [os.path.basename(path)]


_SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS)\s+(\S+?)(?:\s+-\s+(.*))?$")
_SKIPPED = re.compile(r"^SKIPPED \[(\d+)\] (\S+?):\d+: (.*)$")


def _parse_summary(out: str, path: str) -> list[tuple[str, str, str]]:
    res = []
    for line in out.splitlines():
        sk = _SKIPPED.match(line.strip())
        if sk:
            res += [(sk.group(2), "SKIPPED", sk.group(3)[:160])] * int(sk.group(1))
            continue
        m = _SUMMARY.match(line.strip())
        if m:
            outcome, test, reason = m.group(1), m.group(2), (m.group(3) or "")
            res.append((test, outcome, reason[:160]))
    if not res:
        tail = [ln for ln in out.splitlines() if ln.strip()][-3:]
        res.append((path, "ERROR", " | ".join(tail)[:200]))
    return res


def offline_home(src: str, home: str) -> None:
    """A HOME whose ~/.flowcept/settings.yaml is Flowcept's sample settings with the full-offline profile."""
    import yaml

    with open(os.path.join(src, "resources", "sample_settings.yaml"), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    for dotted, value in OFFLINE_PROFILE.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    os.makedirs(os.path.join(home, ".flowcept"), exist_ok=True)
    with open(os.path.join(home, ".flowcept", "settings.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)


def run_examples(work: str, names: list[str], home: str | None, timeout: int,
                 error_rule: bool = True, use_ci_env: bool = True) -> list[tuple[str, str, str]]:
    results = []
    for name in names:
        path = os.path.join(work, "examples", name)
        t0 = time.monotonic()
        try:
            env = _env(home)
            env.update(EXAMPLE_ENV.get(name, {}) if use_ci_env else {})
            proc = subprocess.run([sys.executable, os.path.basename(path)], cwd=os.path.dirname(path),
                                  env=env, capture_output=True, text=True, timeout=timeout)
            out = proc.stdout + proc.stderr
            bad = [ln for ln in proc.stdout.splitlines() if "error" in ln.lower()]
            ok = proc.returncode == 0 and not (bad and error_rule)
            reason = "" if ok else ((bad[:1] or [ln for ln in out.splitlines() if ln.strip()][-1:] or ["?"])[0])
            results.append((name, "PASSED" if ok else "FAILED",
                            f"{reason[:160]} ({time.monotonic() - t0:.0f} s)"))
        except subprocess.TimeoutExpired:
            results.append((name, "FAILED", f"timed out after {timeout} s"))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", help="an unpacked flowcept-1.0.3 source tree (default: download with pip)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/flowcept_dist/flowcept-src"))
    ap.add_argument("--only", choices=("tests", "examples", "offline"))
    ap.add_argument("--keep-home", action="store_true", help="use the real HOME (and its ~/.flowcept/settings.yaml)")
    ap.add_argument("--no-ci-env", action="store_true",
                    help="run every example with no extra environment (Flowcept's runner sets FLOWCEPT_USE_DEFAULT=true "
                         "for unmanaged/simple_task2.py)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per test and per example")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory and print its path")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    src = args.src or fetch_source(args.cache)
    work = tempfile.mkdtemp(prefix="flowcept-compat-")
    home = None if args.keep_home else os.path.join(work, "home")
    try:
        prepare(src, work)
        rows: list[tuple[str, str, str, str]] = []
        if args.only in (None, "tests"):
            rows += [("test", *r) for r in run_tests(work, home, args.timeout, args.verbose)]
        if args.only in (None, "offline"):
            off_home = os.path.join(work, "home-offline")
            offline_home(src, off_home)
            rows += [("offline", *r) for r in run_tests(work, off_home, args.timeout, args.verbose, OFFLINE_TESTS,
                                                         marker="safeoffline")]
        if args.only in (None, "examples"):
            rows += [("example", *r) for r in run_examples(work, EXAMPLES, home, args.timeout,
                                                           use_ci_env=not args.no_ci_env)]
            rows += [("extra", *r) for r in run_examples(work, EXTRA_EXAMPLES, home, args.timeout, error_rule=False)]
        for kind, name, outcome, reason in rows:
            print(f"{kind:8} {outcome:7} {name}  {reason}")
        tests = [r for r in rows if r[0] == "test"]
        examples = [r for r in rows if r[0] == "example"]
        if tests:
            passed = sum(1 for r in tests if r[2] == "PASSED")
            skipped = sum(1 for r in tests if r[2] == "SKIPPED")
            print(f"\nFlowcept {VERSION} unit tests: {passed} passed, {skipped} skipped, "
                  f"{len(tests) - passed - skipped} failed or errored, of {len(tests)}")
        offline = [r for r in rows if r[0] == "offline"]
        if offline:
            print(f"Flowcept {VERSION} offline tests (safeoffline, full-offline settings file): "
                  f"{sum(1 for r in offline if r[2] == 'PASSED')} passed of {len(offline)}")
        if examples:
            print(f"Flowcept {VERSION} examples: {sum(1 for r in examples if r[2] == 'PASSED')} of "
                  f"{len(examples)} run")
    finally:
        if args.keep:
            print(f"scratch directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
