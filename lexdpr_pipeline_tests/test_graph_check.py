"""scripts/graph_check.py's own parts: reading the CLI's output, and the statute edit its proof b relies on.

(The script itself runs the whole graph through the real CLIs; scripts/test.sh runs it after this suite.)
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest
from rich.console import Console

from lexdpr_pipeline_tests.conftest import CORPUS, REPO_ROOT


@pytest.fixture(scope="module")
def graph_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("graph_check", REPO_ROOT / "scripts" / "graph_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["graph_check"] = module
    spec.loader.exec_module(module)
    return module


def test_status_table_reads_what_lex_dpr_status_prints(graph_check: ModuleType, monkeypatch) -> None:
    from lexdpr_pipeline import cli
    from lexdpr_pipeline.orchestration import AssetState

    long_cause = "; ".join(f"has a new dependency data version (upstream_asset_{i})" for i in range(5))
    states = [
        AssetState(dg.AssetKey("raw_statutes"), "STALE", ("has a new dependency data version (legalize_kr_mirror)",)),
        AssetState(dg.AssetKey("model_evaluation"), "STALE", (long_cause,)),
        AssetState(dg.AssetKey("faiss_index"), "FRESH", ()),
        AssetState(dg.AssetKey("raw_admin_rules"), "MISSING", ("never materialized",)),
    ]
    out = io.StringIO()
    # the script runs lex-dpr with COLUMNS=400: one table row per line
    monkeypatch.setattr(cli, "console", Console(file=out, width=400, soft_wrap=True, color_system=None))
    cli._print_states(states)
    assert graph_check.status_table(out.getvalue()) == {
        s.key.to_user_string(): (s.status, "; ".join(s.causes)) for s in states
    }


def test_dry_run_todo_reads_the_refresh_list(graph_check: ModuleType) -> None:
    text = (
        "DAGSTER_HOME=/tmp/x\n2 of 16 assets need a run:\n"
        "  raw_statutes: STALE — has a new dependency data version (legalize_kr_mirror)\n"
        "  law_passages: MISSING — never materialized\n"
    )
    assert graph_check.dry_run_todo(text) == {
        "raw_statutes": ("STALE", "has a new dependency data version (legalize_kr_mirror)"),
        "law_passages": ("MISSING", "never materialized"),
    }


def _articles(mirror: Path) -> dict[str, str]:
    from lexdpr_pipeline.sources.mirror import find_mirror_roots, read_statutes

    root = find_mirror_roots(mirror)[0]
    assert root is not None
    return {a.article_id: a.text for a in read_statutes(root, progress=False).records}


def test_the_touch_changes_one_article_and_a_tail_append_changes_none(graph_check: ModuleType, tmp_path: Path) -> None:
    law = graph_check.TOUCHED_LAW
    src = sorted((CORPUS / "legalize-kr" / "kr" / law).glob("*.md"))[0]
    target = tmp_path / "legalize-kr" / "kr" / law / src.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(src, target)
    before = _articles(tmp_path)

    # At the very end of the file the character lands in the 부칙, which the reader drops: raw_statutes would be
    # identical (same data version), so the proof could not see anything change below it.
    with target.open("a", encoding="utf-8") as f:
        f.write("다")
    assert _articles(tmp_path) == before

    line = graph_check.append_to_first_article(target)
    after = _articles(tmp_path)
    changed = [k for k in before if after.get(k) != before[k]]
    assert after.keys() == before.keys() and len(changed) == 1
    assert line.endswith("다") and line in after[changed[0]]
