"""``tinysplit ops``: the one op table, as users see it; the README's op count is the table's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tinysplit.cli import main
from tinysplit.exporter.codegen.lower import LOWERINGS
from tinysplit.exporter.ops import OPS, SUPPORTED_OPS

ROOT = Path(__file__).resolve().parents[1]


def test_ops_lists_every_op_with_its_constraints(capsys) -> None:
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{len(OPS)} int8 ops")
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and line[2] != " "]
    assert listed == sorted(OPS)
    assert main(["ops", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["op"] for g in got] == sorted(OPS) and all(g["constraints"] == OPS[g["op"]] for g in got)


def test_one_op_list_for_the_check_the_lowering_and_the_command() -> None:
    assert SUPPORTED_OPS == frozenset(OPS) == frozenset(LOWERINGS)
    assert all(isinstance(v, str) and len(v) > 10 for v in OPS.values()), "every op states its constraints"


def test_readme_op_count_is_the_tables() -> None:
    text = (ROOT / "README.md").read_text()
    counts = {int(n) for n in re.findall(r"(\d+) int8 ops", text)}
    assert counts == {len(OPS)}, f"README says {sorted(counts)} int8 ops; `tinysplit ops` lists {len(OPS)}"


def test_closed_stdout_ends_quietly_with_141() -> None:
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first byte, as `| head` after its lines
    p = subprocess.run([sys.executable, "-m", "tinysplit", "ops", "--json"], stdout=w, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    os.close(w)
    assert p.returncode == 141 and p.stderr == "", (p.returncode, p.stderr)


def test_the_cli_names_every_zoo_example() -> None:
    from tinysplit.cli.export import ZOO
    from tinysplit.examples.zoo import HEADS

    assert tuple(HEADS) == ZOO


def test_readme_per_op_case_count_is_the_suites() -> None:
    from opcases import all_cases

    n = len(all_cases())
    for doc in ("README.md", "docs/firmware.md"):
        counts = {int(c) for c in re.findall(r"per-op suite \((\d+) random cases", (ROOT / doc).read_text())}
        assert counts == {n}, f"{doc} says {sorted(counts)} per-op cases; tests/opcases.py has {n}"


def test_docs_ops_md_is_the_table(capsys) -> None:
    assert main(["ops", "--markdown"]) == 0
    assert (ROOT / "docs" / "ops.md").read_text() == capsys.readouterr().out, \
        "docs/ops.md is stale: regenerate it with `tinysplit ops --markdown > docs/ops.md`"
