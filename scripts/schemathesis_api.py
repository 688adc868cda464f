"""Schemathesis against the LexDPR HTTP API: every check (``--checks all``), positive and negative data.

Builds a tiny real index (random tiny model, 8 passages: lexdpr_pipeline_tests/api/tiny_index.py) in a temporary
folder, serves it with uvicorn on 127.0.0.1 as ``lex-dpr api`` does (API key set; the per-client request limit off),
and runs ``schemathesis run http://127.0.0.1:PORT/openapi.json --checks all --mode all -H "X-API-Key: …"`` with the
arguments given here appended. The exit status is schemathesis' (0: nothing found).

    .venv/bin/python scripts/schemathesis_api.py                      # the full run (all phases, default budget)
    .venv/bin/python scripts/schemathesis_api.py --max-examples 500   # more examples per operation

A bounded, deterministic version runs with the tests (lexdpr_pipeline_tests/api/test_schemathesis.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lexdpr_pipeline_tests.api.schemathesis_run import run_schemathesis
from lexdpr_pipeline_tests.tiny_model import build_tiny_model, build_tiny_tokenizer


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="lexdpr-schemathesis-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", build_tiny_tokenizer(root / "tokenizer"), root / "hf")
        status, _ = run_schemathesis(root / "data", model_dir, argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
