import json
import logging
from pathlib import Path

from lexdpr_pipeline.logging_setup import configure_logging


def test_json_log_file_and_secret_redaction(tmp_path: Path) -> None:
    log_file = tmp_path / "lexdpr.log"
    configure_logging("DEBUG", json_format=True, file=log_file, secrets=["SECRETOC123"])
    log = logging.getLogger("lexdpr_pipeline.test")
    log.info("calling %s", "https://x/DRF/lawSearch.do?OC=SECRETOC123&target=law")
    log.debug("other url ?OC=someone_else&x=1")
    for handler in logging.getLogger("lexdpr_pipeline").handlers:
        handler.flush()
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert [rec["level"] for rec in lines] == ["INFO", "DEBUG"]
    text = log_file.read_text(encoding="utf-8")
    assert "SECRETOC123" not in text and "someone_else" not in text
    assert "OC=***" in lines[0]["message"]
    configure_logging("WARNING")  # reset: no file handler left behind
    assert all(not isinstance(h, logging.FileHandler) for h in logging.getLogger("lexdpr_pipeline").handlers)
