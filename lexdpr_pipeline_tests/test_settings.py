from pathlib import Path

import pytest
from pydantic import ValidationError

from lexdpr_pipeline.settings import dump, load_settings


def test_precedence_defaults_yaml_env_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  max_items: 10\n  source: api\nlawgo:\n  timeout_s: 5\n", encoding="utf-8")
    env = {"LEXDPR_MAX_ITEMS": "20", "LEXDPR__LAWGO__MAX_RETRIES": "9"}
    s = load_settings(cfg, ["ingest.max_items=30"], environ=env)
    assert s.ingest.max_items == 30  # CLI beats env beats YAML
    assert s.ingest.source == "api"  # from YAML
    assert s.lawgo.timeout_s == 5.0  # from YAML
    assert s.lawgo.max_retries == 9  # generic env form
    assert load_settings(cfg, environ=env).ingest.max_items == 20
    assert load_settings(environ={}).ingest.max_items is None  # default


def test_config_file_from_env_var(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("paths:\n  mirror_dir: /somewhere\n", encoding="utf-8")
    assert load_settings(environ={"LEXDPR_CONFIG": str(cfg)}).paths.mirror_dir == Path("/somewhere")


def test_secret_masked_in_dump() -> None:
    s = load_settings(environ={"LAW_GO_KR_OC": "SECRETOC123"})
    assert s.lawgo.oc is not None and s.lawgo.oc.get_secret_value() == "SECRETOC123"
    text = dump(s)
    assert "SECRETOC123" not in text
    assert "oc: '**********'" in text
    assert "SECRETOC123" not in repr(s)


def test_secret_refused_in_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lawgo:\n  oc: SECRETOC123\n", encoding="utf-8")
    with pytest.raises(ValueError, match="LAW_GO_KR_OC"):
        load_settings(cfg, environ={})


def test_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(overrides=["ingest.source=ftp"], environ={})
    with pytest.raises(ValidationError):
        load_settings(overrides=["ingest.no_such_field=1"], environ={})
    with pytest.raises(ValueError, match=r"section\.field=value"):
        load_settings(overrides=["nonsense"], environ={})
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml", environ={})
