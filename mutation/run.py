"""``make mutate``: mutation testing with cosmic-ray against the fast unit layer (no servers).

    .local/cosmic-ray/bin/python mutation/run.py proof|logic|tokens|links [--sample FRACTION]

Runs in cosmic-ray's own venv (``make mutate`` creates it). cosmic-ray mutates source files in place,
one mutant at a time, so it works on a copy of the last commit, one per target
(``build/mutation-tree-<target>``, imported first through ``PYTHONPATH``): the working tree is never
touched, and other work can go on meanwhile. Each mutant runs the config's ``test-command`` (the
project venv's pytest).

* ``proof``: the functions that prove bytes and classify providers' answers (mutation/proof.toml,
  ``[select]``): every mutant must be killed.
* ``logic``: the whole of ``logic/`` (mutation/logic.toml): a score, on a fixed sample when
  ``--sample`` is given (each mutant costs a pytest run).
* ``tokens``: Chainloop's download-link tokens (mutation/tokens.toml), against their unit tests.
* ``links``: the ``/download`` route's logic and the verifier's logic (mutation/links.toml), against
  their unit tests and the scenario tests that drive them on moto.

Mutants outside the selected functions are marked skipped before the run; the report names every
survivor by file, line, enclosing function and operator. Not part of CI: it takes minutes to hours.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def function_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """``qualified name -> (first line, last line)`` of every function and method of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ranges: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                ranges[f"{prefix}{child.name}"] = (child.lineno, child.end_lineno or child.lineno)
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return ranges


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are: with ``from __future__ import annotations`` they are never
    evaluated, so a mutant inside one is equivalent and not counted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        found: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign):
            found.append(node.annotation)
        for annotation in found:
            if annotation is not None and annotation.end_lineno is not None:
                end = (annotation.end_lineno, annotation.end_col_offset or 0)
                spans.append(((annotation.lineno, annotation.col_offset), end))
    return spans


def enclosing(ranges: dict[str, tuple[int, int]], line: int) -> str:
    inside = [(end - start, name) for name, (start, end) in ranges.items() if start <= line <= end]
    return min(inside)[1] if inside else "<module>"


def survivors_of(session: Path) -> set[tuple[str, str, int]]:
    """``(module, operator, occurrence)`` of every mutant that survived in a session."""
    if not session.exists():
        return set()
    with use_db(str(session)) as db:
        return {
            (
                str(Path(item.mutations[0].module_path)),
                item.mutations[0].operator_name,
                item.mutations[0].occurrence,
            )
            for item, result in db.completed_work_items
            if result.worker_outcome is WorkerOutcome.NORMAL and result.test_outcome is TestOutcome.SURVIVED
        }


def select(
    db: WorkDB,
    selected: dict[str, list[str]],
    sample: float | None,
    seed: int,
    only: set[tuple[str, str, int]] | None = None,
) -> int:
    """Skip every mutant outside the selected functions (all of a module when its list is empty),
    then keep a fixed random ``sample`` of the rest (or, with ``only``, just those mutants). Returns
    how many remain."""
    ranges = {path: function_ranges(ROOT / path) for path in selected}
    annotations = {path: annotation_spans(ROOT / path) for path in selected}
    rng = random.Random(seed)
    skipped, kept = [], 0
    for item in db.pending_work_items:
        (mutation,) = item.mutations
        path = str(Path(mutation.module_path))
        wanted = selected.get(path)
        name = enclosing(ranges[path], mutation.start_pos[0]) if path in ranges else "<module>"
        inside = path in selected and (not wanted or name in wanted or name.split(".")[0] in wanted)
        start = tuple(mutation.start_pos)
        in_annotation = any(first <= start < last for first, last in annotations.get(path, []))
        key = (path, mutation.operator_name, mutation.occurrence)
        unwanted = only is not None and key not in only
        if not inside or in_annotation or unwanted or (sample is not None and rng.random() >= sample):
            skipped.append(item.job_id)
        else:
            kept += 1
    if skipped:
        db.set_multiple_results(
            skipped, WorkResult(output="not selected", worker_outcome=WorkerOutcome.SKIPPED)
        )
    return kept


def report(db: WorkDB, selected: dict[str, list[str]]) -> int:
    ranges = {path: function_ranges(ROOT / path) for path in selected}
    outcomes: Counter[str] = Counter()
    per_module: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    for item, result in db.completed_work_items:
        if result.worker_outcome is WorkerOutcome.SKIPPED:
            continue
        (mutation,) = item.mutations
        if result.worker_outcome is not WorkerOutcome.NORMAL:
            outcomes[str(result.worker_outcome.value)] += 1
            continue
        outcomes[str(result.test_outcome.value)] += 1
        path = str(Path(mutation.module_path))
        per_module.setdefault(path, Counter())[str(result.test_outcome.value)] += 1
        if result.test_outcome is TestOutcome.SURVIVED:
            function = enclosing(ranges.get(path, {}), mutation.start_pos[0])
            survivors.append(
                f"  {path}:{mutation.start_pos[0]} {function}: {mutation.operator_name} #{mutation.occurrence}"
            )
    killed = outcomes.get(TestOutcome.KILLED.value, 0) + outcomes.get(TestOutcome.INCOMPETENT.value, 0)
    total = killed + outcomes.get(TestOutcome.SURVIVED.value, 0)
    print(f"mutants run: {total}; killed: {killed}; survived: {len(survivors)}; other: {dict(outcomes)}")
    if total:
        print(f"score: {100.0 * killed / total:.1f} % killed")
    for path, counts in sorted(per_module.items()):
        module_killed = counts[TestOutcome.KILLED.value] + counts[TestOutcome.INCOMPETENT.value]
        module_total = module_killed + counts[TestOutcome.SURVIVED.value]
        if module_total:
            share = 100.0 * module_killed / module_total
            print(f"  {path}: {module_killed} of {module_total} killed ({share:.1f} %)")
    if survivors:
        print("survivors:")
        print("\n".join(sorted(survivors)))
    return len(survivors)


def copy_of_last_commit(tree: Path, config_path: Path) -> Path:
    """``git archive HEAD`` into ``tree``, and the config there with the project venv's python."""
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    python = str(ROOT / ".venv" / "bin" / "python")
    text = config_path.read_text(encoding="utf-8").replace('".venv/bin/python ', f'"{python} ')
    copy = tree / "mutation" / config_path.name
    copy.write_text(text, encoding="utf-8")
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["proof", "logic", "tokens", "links"])
    parser.add_argument(
        "--sample", type=float, default=None, help="fraction of the mutants to run (fixed seed)"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--report-only", action="store_true", help="report the last session, run nothing")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run only the mutants that survived the last session (after a fix)",
    )
    args = parser.parse_args(argv)

    config_path = ROOT / "mutation" / f"{args.target}.toml"
    config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    tree = ROOT / "build" / f"mutation-tree-{args.target}"  # one per target: both can run at once
    selected: dict[str, list[str]] = config.get("select", {}).get("functions") or {
        str(module.relative_to(ROOT)): []
        for path in config["cosmic-ray"]["module-path"]
        for module in ([ROOT / path] if (ROOT / path).is_file() else sorted((ROOT / path).rglob("*.py")))
    }
    session = ROOT / "build" / f"mutation-{args.target}.sqlite"
    if not args.report_only:
        only = survivors_of(session) if args.survivors else None
        session.parent.mkdir(parents=True, exist_ok=True)
        session.unlink(missing_ok=True)
        config_copy = copy_of_last_commit(tree, config_path)
        env = {**os.environ, "PYTHONPATH": str(tree / "functions")}
        cosmic_ray = str(BIN / "cosmic-ray")
        subprocess.run([cosmic_ray, "init", str(config_copy), str(session)], check=True, cwd=tree, env=env)
        with use_db(str(session)) as db:
            print(f"{select(db, selected, args.sample, args.seed, only)} mutants selected", flush=True)
        # a clean baseline first: the tests must pass on the unmutated copy
        subprocess.run([cosmic_ray, "baseline", str(config_copy)], check=True, cwd=tree, env=env)
        subprocess.run([cosmic_ray, "exec", str(config_copy), str(session)], check=True, cwd=tree, env=env)
    with use_db(str(session)) as db:
        survived = report(db, selected)
    return 1 if args.target == "proof" and survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
