"""Find printed numbers that sit on a rounding edge: the outputs nbval compares that another CPU may flip.

A chapter that prints ``f"{x:.2f}"`` with x = 3.68503 passes on the machine that executed it and fails on
one whose float32 sums differ in the sixth digit (AVX2 vs AVX-512 vs Arm): 3.68497 prints 3.68. This tool
runs each notebook twice, as the machine runs it and under the narrower kernels of `make test`'s second
nbval pass, with every f-string field of a fixed-point, percent or exponent format (``.2f``, ``.1%``,
``.3e``, ...) in the cells nbval compares (not those marked ``NBVAL_IGNORE_OUTPUT`` or ``NBVAL_SKIP``)
wrapped in a probe that records the value. A value that moved between the two runs and whose nearest
rounding boundary lies within ``--margin`` times that move (default 100) is listed: print it with fewer
digits, or assert it with a tolerance. Values that did not move (read from a manifest, counted exactly)
are not at risk, however many digits they print.

    .venv/bin/python tools/rounding_edges.py book/07_conditioning.ipynb [more notebooks] [--margin 100]

The probe returns each value unchanged, so the notebook runs as it does under nbval. It is not a test (a
value far from an edge today may drift towards one when a chapter changes, and two runs sample the noise
of only two instruction sets): run it before committing re-executed notebooks, beside
../shared/tools/check_notebooks.py. It exits 1 when it lists anything.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient

SPEC = re.compile(r"^[^.]*\.(\d+)([fF%eE])$")
# the narrower kernels of `make test`'s second nbval pass (Makefile: LOW_ISA)
LOW_ISA = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
IGNORED = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")

PROBE = r'''
def __rounding_edge_probe(value, spec, where, _log=__import__("os").environ["ROUNDING_EDGES_LOG"]):
    import json, math, re
    try:
        v = float(value)
    except (TypeError, ValueError):
        return value
    m = re.match(r"^[^.]*\.(\d+)([fF%eE])$", spec)
    if m is None or not math.isfinite(v) or v == 0:
        return value
    digits, kind = int(m.group(1)), m.group(2)
    unit = 10.0 ** -digits / (100 if kind == "%" else 1)   # one step of the last printed digit
    if kind in "eE":
        unit *= 10.0 ** math.floor(math.log10(abs(v)))
    scaled = abs(v) / unit
    edge = abs(scaled - math.floor(scaled) - 0.5) * unit   # distance to the nearest rounding boundary
    with open(_log, "a") as f:
        f.write(json.dumps({"where": where, "spec": spec, "value": v, "edge": edge,
                            "printed": format(value, spec)}) + "\n")
    return value
'''


class _Wrap(ast.NodeTransformer):
    def __init__(self, where: str):
        self.where = where

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        self.generic_visit(node)
        spec = node.format_spec
        if (isinstance(spec, ast.JoinedStr) and len(spec.values) == 1 and isinstance(spec.values[0], ast.Constant)
                and SPEC.match(str(spec.values[0].value))):
            text = str(spec.values[0].value)
            line = getattr(node.value, "lineno", 0)
            node.value = ast.Call(ast.Name("__rounding_edge_probe", ast.Load()),
                                  [node.value, ast.Constant(text), ast.Constant(f"{self.where}, line {line}")], [])
        return node


def instrument(path: Path) -> tuple[nbformat.NotebookNode, int]:
    nb = nbformat.read(path, as_version=4)
    transform = TransformerManager().transform_cell
    probed, code_index = 0, 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        if any(tag in cell.source for tag in IGNORED):
            continue
        python = transform(cell.source)
        try:
            tree = ast.parse(python)
        except SyntaxError:
            continue
        before = ast.dump(tree)
        tree = ast.fix_missing_locations(_Wrap(f"{path.name} code cell {code_index}").visit(tree))
        if ast.dump(tree) != before:
            cell.source = ast.unparse(tree)
            probed += 1
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    return nb, probed


def run(path: Path, env: dict[str, str], timeout: int) -> list[dict]:
    """Execute the instrumented notebook once under ``env`` (added to this process's environment)."""
    nb, _ = instrument(path)
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "edges.jsonl"
        log.touch()
        os.environ.update(env, ROUNDING_EDGES_LOG=str(log))
        try:
            # run where the chapter lives: chapters read ../checkpoints and figures relative to book/
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return [json.loads(line) for line in log.read_text().splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--margin", type=float, default=100.0,
                        help="report a value whose rounding edge lies within MARGIN times the difference "
                             "between the two runs (default 100)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    at_risk = 0
    for path in args.notebooks:
        _, probed = instrument(path)
        native = run(path, {}, args.timeout)
        narrow = run(path, LOW_ISA, args.timeout)
        if [r["where"] for r in native] != [r["where"] for r in narrow]:
            print(f"{path}: the two runs printed different sequences of values; compare them by hand")
            at_risk += 1
            continue
        moved = [(a, b) for a, b in zip(native, narrow) if a["value"] != b["value"]]
        close = sorted(((a, b) for a, b in moved if a["edge"] < args.margin * abs(a["value"] - b["value"])
                        or a["printed"] != b["printed"]),
                       key=lambda ab: ab[0]["edge"] / abs(ab[0]["value"] - ab[1]["value"]))
        print(f"{path}: {probed} cells probed, {len(native)} printed values, {len(moved)} moved under the "
              f"narrower kernels, {len(close)} with a rounding edge within {args.margin:g}x of that move")
        for a, b in close:
            print(f"  {a['where']}: {a['value']!r} vs {b['value']!r} printed as {a['printed']!r} / "
                  f"{b['printed']!r} (format '{a['spec']}'); edge {a['edge']:.1e} away, "
                  f"{a['edge'] / abs(a['value'] - b['value']):.0f}x the move")
        at_risk += len(close)
    return 1 if at_risk else 0


if __name__ == "__main__":
    sys.exit(main())
