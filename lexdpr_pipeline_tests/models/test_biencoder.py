from pathlib import Path

import numpy as np
import pytest

from lexdpr_pipeline.models.biencoder import BiEncoder, Template


def test_templates() -> None:
    assert Template.named("e5").prompts()["query"] == "query: "
    assert Template.named("bge").passage == "" and Template.named("bge").query.startswith("Represent")
    with pytest.raises(ValueError, match="unknown template"):
        Template.named("nope")


def test_template_travels_with_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    enc = BiEncoder.load(tiny_model_dir, template=Template.custom("질의: ", "문서: "))
    q = enc.encode_queries(["민법 불법행위의 내용"])
    p = enc.encode_passages(["민법 불법행위의 내용"])
    assert q.dtype == np.float32 and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(q, p)  # different prefixes, different inputs
    saved = enc.save(tmp_path / "m")
    again = BiEncoder.load(saved)  # no template given: the saved one is used
    assert again.template == Template.custom("질의: ", "문서: ")
    assert np.allclose(again.encode_queries(["민법 불법행위의 내용"]), q, atol=1e-5)
    # The prefix really is applied: encoding the prefixed text without a template gives the same vector.
    bare = BiEncoder.load(saved, template=Template.named("none"))
    assert np.allclose(bare.encode_queries(["질의: 민법 불법행위의 내용"]), q, atol=1e-5)
