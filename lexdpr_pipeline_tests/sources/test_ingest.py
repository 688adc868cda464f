"""``ingest_records`` from the mirrors and the ``completeness`` verdict (the ``raw_*`` assets' workflow, no Dagster).
The API side, against the fake law.go.kr server, is in ``lawgo/test_ingest_api.py``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from lexdpr_pipeline.settings import IngestSettings, LawGoSettings
from lexdpr_pipeline.sources.ingest import SourceUnavailableError, completeness, ingest_records
from lexdpr_pipeline.sources.records import ADMIN_RULE_SCHEMA
from lexdpr_pipeline_tests.conftest import CORPUS


def _no_client(_cfg: LawGoSettings):  # type: ignore[no-untyped-def]
    raise AssertionError("a mirror ingest must not make an API client")


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    shutil.copytree(CORPUS / "legalize-kr" / "kr" / "가사소송법", root / "legalize-kr" / "kr" / "가사소송법")
    dest = root / "precedent-kr" / "민사" / "대법원"
    dest.mkdir(parents=True)
    for path in sorted((CORPUS / "precedent-kr" / "민사" / "대법원").glob("*.md"))[:3]:
        shutil.copy(path, dest / path.name)
    (dest / "broken.md").write_text("no front matter here\n", encoding="utf-8")
    return root


def _ingest(target: str, mirror_dir: Path, **ingest: object):  # type: ignore[no-untyped-def]
    return ingest_records(
        target,  # type: ignore[arg-type]
        IngestSettings(**ingest),
        LawGoSettings(),
        client_factory=_no_client,
        raw_dir=mirror_dir.parent / "raw",
        mirror_dir=mirror_dir,
        progress=False,
    )


def test_mirror_records_with_their_skips(mirror: Path) -> None:
    precedents = _ingest("prec", mirror)
    assert precedents.source == "mirror" and precedents.crawl is None and precedents.note is None
    assert precedents.mirror_root == mirror / "precedent-kr" and precedents.frame.height == 3
    assert [Path(s.ref).name for s in precedents.skipped] == ["broken.md"]  # counted and reported, not dropped
    assert precedents.frame["prec_id"].str.starts_with("prec:").all()

    statutes = _ingest("law", mirror, max_items=1)
    assert statutes.mirror_root == mirror / "legalize-kr" and set(statutes.frame["law_name"]) == {"가사소송법"}
    assert statutes.frame["article_id"].str.starts_with("law:").all()


def test_a_missing_mirror_says_what_to_set(tmp_path: Path, mirror: Path) -> None:
    shutil.rmtree(mirror / "legalize-kr")
    with pytest.raises(SourceUnavailableError, match=r"no law mirror under .*LEXDPR_MIRROR_DIR"):
        _ingest("law", mirror)
    assert issubclass(SourceUnavailableError, FileNotFoundError)


def test_admin_rules_have_no_mirror_an_empty_table_and_a_note(mirror: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lexdpr_pipeline.sources.ingest"):
        rules = _ingest("admrul", mirror)
    assert rules.frame.is_empty() and rules.frame.schema == ADMIN_RULE_SCHEMA
    assert rules.note == "mirror source has no admrul data; use source=api" and rules.skipped == []
    assert "no mirror reader for admrul" in caplog.text


def test_completeness_of_a_crawl() -> None:
    ok = completeness("api", missing=1, wanted=200, missing_ids=["7"], limit=0.01)
    assert ok.applicable and ok.passed and ok.share == 0.005
    assert ok.description == "1 of 200 wanted documents missing (0.50%; limit 1.00%): 7"
    bad = completeness("api", missing=3, wanted=10, missing_ids=["1", "2", "3"], limit=0.2)
    assert bad.applicable and not bad.passed and (bad.missing, bad.wanted, bad.limit) == (3, 10, 0.2)
    assert bad.description.endswith(": 1, 2, 3")
    none = completeness("api", missing=0, wanted=0, missing_ids=[], limit=0.0)
    assert none.passed and none.share == 0.0 and none.description.endswith("limit 0.00%)")


def test_completeness_of_a_mirror_read_always_passes() -> None:
    verdict = completeness("mirror", missing=5, wanted=5, missing_ids=["x"], limit=0.0)
    assert verdict.passed and not verdict.applicable
    assert verdict.description == "source=mirror: no API crawl, nothing can be missing"


def test_completeness_descriptions_are_scrubbed() -> None:
    verdict = completeness("api", missing=1, wanted=1, missing_ids=["lawService.do?OC=s3cret&ID=1"], limit=0.0)
    assert not verdict.passed and "s3cret" not in verdict.description and "ID=1" in verdict.description
