"""``lex-dpr config init``: the commented starter lexdpr.yaml generated from the settings model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lexdpr_pipeline import cli
from lexdpr_pipeline.settings import ENV_VARS, SECRET_SETTINGS, Settings, env_var_of, load_settings, starter_yaml

runner = CliRunner()


def _fields() -> list[tuple[str, str, object]]:
    """(section, field, FieldInfo) for every setting of the model."""
    out = []
    for section, info in Settings.model_fields.items():
        assert info.annotation is not None
        out += [(section, name, field) for name, field in info.annotation.model_fields.items()]
    return out


def _comments_above(lines: list[str], index: int) -> str:
    """The comment lines right above ``lines[index]``, joined."""
    found = []
    while index > 0 and lines[index - 1].lstrip().startswith("#"):
        index -= 1
        found.insert(0, lines[index].strip().removeprefix("#").strip())
    return " ".join(found)


def test_every_setting_with_its_default_description_and_variable() -> None:
    text = starter_yaml()
    tree = yaml.safe_load(text)
    defaults = Settings().model_dump(mode="json")
    lines = text.splitlines()
    keys: dict[tuple[str, str], int] = {}  # (section, field) -> its line
    section = ""
    for index, line in enumerate(lines):
        if match := re.fullmatch(r"(\w+):", line):
            section = match[1]
        elif match := re.match(r"  (\w+):", line):
            keys[section, match[1]] = index
    assert set(tree) == set(Settings.model_fields)
    for section, name, info in _fields():
        dotted = f"{section}.{name}"
        if dotted in SECRET_SETTINGS:
            continue
        assert tree[section][name] == defaults[section][name], dotted
        above = _comments_above(lines, keys[section, name])
        assert f"env: {env_var_of(dotted)}" in above, dotted
        if info.description:  # the description, re-wrapped into comment lines
            first_words = " ".join(info.description.replace("``", "`").split()[:4])
            assert first_words in above, dotted
    # the named variables where there is one, the generic form otherwise
    assert env_var_of("paths.data_dir") == "LEXDPR_DATA_DIR" and "# env: LEXDPR_DATA_DIR" in text
    assert env_var_of("train.learning_rate") == "LEXDPR__TRAIN__LEARNING_RATE"
    assert "# one of: dense, bm25, hybrid" in text  # a Literal's choices


def test_named_variables_in_the_comments_are_the_ones_load_settings_reads(tmp_path: Path) -> None:
    for name, dotted in ENV_VARS.items():
        if dotted not in SECRET_SETTINGS:
            assert f"# env: {name}" in starter_yaml(), name
    path = tmp_path / "lexdpr.yaml"
    path.write_text(starter_yaml(), encoding="utf-8")
    env = {env_var_of("search.rrf_k"): "7", env_var_of("paths.data_dir"): str(tmp_path / "d")}
    settings = load_settings(path, environ=env)  # the environment beats the file, as the header says
    assert settings.search.rrf_k == 7 and settings.paths.data_dir == tmp_path / "d"


def test_starter_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "lexdpr.yaml"
    path.write_text(starter_yaml(), encoding="utf-8")
    assert load_settings(path, environ={}) == Settings()


def test_secrets_are_named_never_given_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAW_GO_KR_OC", "OC-SECRET-123")
    monkeypatch.setenv("LEXDPR_API_KEY", "KEY-SECRET-456")
    text = starter_yaml()
    assert "OC-SECRET-123" not in text and "KEY-SECRET-456" not in text
    tree = yaml.safe_load(text)
    assert "oc" not in tree["lawgo"] and "api_key" not in tree["api"]  # only in comments
    assert "# oc: secret — set LAW_GO_KR_OC in the environment" in text
    assert "# api_key: secret — set LEXDPR_API_KEY in the environment" in text


def test_cli_writes_refuses_to_overwrite_and_forces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["config", "init"])
    assert result.exit_code == 0, result.output
    default = tmp_path / "lexdpr.yaml"
    assert default.read_text(encoding="utf-8") == starter_yaml()
    assert f"wrote {default}" in result.output

    default.write_text("ingest:\n  max_items: 5\n", encoding="utf-8")  # the user's own file
    refused = runner.invoke(cli.app, ["config", "init"])
    assert refused.exit_code == 2
    assert "already exists" in refused.output and "--force" in refused.output
    assert default.read_text(encoding="utf-8") == "ingest:\n  max_items: 5\n"

    forced = runner.invoke(cli.app, ["config", "init", "--force"])
    assert forced.exit_code == 0, forced.output
    assert default.read_text(encoding="utf-8") == starter_yaml()

    other = tmp_path / "conf" / "mine.yaml"
    assert runner.invoke(cli.app, ["config", "init", str(other)]).exit_code == 0
    assert load_settings(other, environ={}) == Settings()

    folder = runner.invoke(cli.app, ["config", "init", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output
