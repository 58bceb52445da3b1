"""The hostile corpus (tests/hostile/): every case in a fresh process, judged on its promised outcome.

Each case must end as promised (a one-line error with exit 2, a refusal by the audit, or a
handled run) with no traceback, no hang, no changed input, no forbidden side effect, no
temporary file and no process left behind. Cases run two at a time; the table of outcomes is
printed (``pytest -s``) and written to ``hostile-report.txt`` in the test's temporary folder.
``DEEPIMAGEJ_HOSTILE=descriptors,images`` runs only those topics (for work on one topic).
"""

from __future__ import annotations

import importlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from hostile import TOPICS
from hostile.case import Case, Verdict, run_case
from hostile.materials import build

pytestmark = pytest.mark.slow


def _cases() -> list[tuple[str, Case]]:
    wanted = [t for t in os.environ.get("DEEPIMAGEJ_HOSTILE", "").split(",") if t] or list(TOPICS)
    cases = []
    for topic in wanted:
        module = importlib.import_module(f"hostile.{topic}")
        cases += [(topic, case) for case in module.CASES]
    return cases


def test_hostile_corpus(tmp_path_factory) -> None:
    cases = _cases()
    ids = [case.id for _, case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    materials = build(tmp_path_factory.mktemp("hostile") / "materials")
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts: list[Verdict] = list(
            pool.map(lambda tc: run_case(tc[1], root / tc[1].id, materials), cases)
        )
    lines = []
    for (topic, _), verdict in zip(cases, verdicts):
        status = "SKIP" if verdict.skipped else ("FAIL" if verdict.problems else "ok")
        detail = verdict.skipped or verdict.summary
        lines.append(
            f"{status:4} {topic:11} {verdict.case.id:34} {verdict.case.expect:11} {verdict.seconds:5.1f}s  {detail}"
        )
        lines += [f"       -> {p}" for p in verdict.problems]
    report = "\n".join(lines)
    (root / "hostile-report.txt").write_text(report + "\n", encoding="utf-8")
    print("\n" + report)
    failed = [v for v in verdicts if v.problems]
    assert not failed, f"{len(failed)} of {len(verdicts)} hostile cases failed:\n" + "\n".join(
        line for line in lines if not line.startswith(("ok", "SKIP"))
    )
