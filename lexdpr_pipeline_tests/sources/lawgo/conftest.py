"""Fixtures for the law.go.kr source tests: a local DRF replay server over ``../shared/lawgo``.

``FakeDrf`` answers ``/DRF/lawService.do`` with the stored bodies (by ``MST``/``ID`` and ``type``) and
``/DRF/lawSearch.do`` with listing pages generated in the real shapes (``LawSearch``/``PrecSearch``/
``AdmRulSearch``, paging, date-range filters, the caller's OC echoed inside ``…상세링크`` as the real API does).
Tests script faults per request (``drf.faults[(target, key)] = ["500", "ok"]``) and change what is listed.

Bodies served: the 64 *recorded* law XML bodies; the 6 *reconstructed* precedent bodies (rebuilt from mirror
records in the documented PrecService shape, not recorded); the hand-built admin-rule fixtures of
``fixtures/admrul`` (no real admin-rule body exists; see ``fixtures/README.md``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from lexdpr_pipeline.sources.lawgo.client import LawGoClient

FAKE_OC = "SECRETOC123"
FIXTURES = Path(__file__).parent / "fixtures"
ADMRUL_FIXTURES = FIXTURES / "admrul"

XML_TYPE = "text/xml;charset=UTF-8"
JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"

AUTH_FAILURE = (
    '{"result":"사용자 정보 검증에 실패하였습니다.","msg":"OPEN API 호출 시 사용자 검증을 위하여 정확한 '
    '서버장비의 IP주소 및 도메인주소를 등록해 주세요."}'
).encode()
MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>국가법령정보센터 시스템 점검 안내</title></head>"
    "<body><p>보다 나은 서비스를 위해 시스템 점검 중입니다.</p></body></html>"
).encode()
NO_MATCH_NAME = {"law": "법령이", "prec": "판례가", "admrul": "행정규칙이"}  # with the subject particle

#: a small default law listing: three versions of 원호재산특별처리법 (001322), two short decrees, and one
#: article-less 대통령령 (31205, its only 조문단위 is a 전문 text row).
DEFAULT_LAWS = ["2839", "2840", "2841", "20194", "24144", "31205"]


def _tag(xml: str, name: str) -> str:
    m = re.search(rf"<{name}(?:\s[^>]*)?>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml, re.S)
    return m.group(1).strip() if m else ""


@dataclass
class DrfCorpus:
    """Bodies and listing rows, loaded once per session."""

    law_bodies: dict[str, bytes] = field(default_factory=dict)  # MST → XML
    law_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    prec_bodies: dict[str, dict[str, bytes]] = field(default_factory=dict)  # 판례일련번호 → {"XML": …, "JSON": …}
    prec_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    admrul_bodies: dict[str, dict[str, bytes]] = field(default_factory=dict)  # 행정규칙일련번호 → {fmt: bytes}
    admrul_rows: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, lawgo: Path) -> DrfCorpus:
        corpus = cls()
        for path in sorted((lawgo / "recorded" / "law-detail-xml").glob("*.xml")):
            body = path.read_bytes()
            head = body[:6000].decode("utf-8", errors="ignore")
            mst = path.stem
            corpus.law_bodies[mst] = body
            corpus.law_rows[mst] = {
                "법령일련번호": mst,
                "현행연혁코드": "현행",
                "법령명한글": _tag(head, "법령명_한글"),
                "법령약칭명": "",
                "법령ID": _tag(head, "법령ID"),
                "공포일자": _tag(head, "공포일자"),
                "공포번호": _tag(head, "공포번호"),
                "제개정구분명": _tag(head, "제개정구분"),
                "소관부처명": _tag(head, "소관부처"),
                "법령구분명": _tag(head, "법종구분"),
                "시행일자": _tag(head, "시행일자"),
                "법령상세링크": f"/DRF/lawService.do?OC={{oc}}&target=law&MST={mst}&type=HTML&mobileYn=",
            }
        for path in sorted((lawgo / "reconstructed" / "prec-detail").glob("*.json")):
            serial = path.stem
            corpus.prec_bodies[serial] = {"JSON": path.read_bytes(), "XML": path.with_suffix(".xml").read_bytes()}
            doc = json.loads(path.read_bytes())["PrecService"]
            date = doc["선고일자"]
            corpus.prec_rows[serial] = {
                "판례일련번호": serial,
                "사건명": doc["사건명"],
                "사건번호": doc["사건번호"],
                "선고일자": f"{date[:4]}.{date[4:6]}.{date[6:]}",
                "법원명": doc["법원명"],
                "법원종류코드": doc["법원종류코드"],
                "사건종류명": doc["사건종류명"],
                "사건종류코드": doc["사건종류코드"],
                "판결유형": doc["판결유형"],
                "선고": doc["선고"],
                "데이터출처명": "대법원",
                "판례상세링크": f"/DRF/lawService.do?OC={{oc}}&target=prec&ID={serial}&type=HTML&mobileYn=",
            }
        for path in sorted(ADMRUL_FIXTURES.glob("*.json")):
            serial = path.stem
            corpus.admrul_bodies[serial] = {"JSON": path.read_bytes(), "XML": path.with_suffix(".xml").read_bytes()}
            info = json.loads(path.read_bytes())["AdmRulService"]["행정규칙기본정보"]
            corpus.admrul_rows[serial] = {
                "행정규칙일련번호": serial,
                "행정규칙명": info["행정규칙명"],
                "행정규칙종류": info["행정규칙종류"],
                "발령일자": info["발령일자"],
                "발령번호": info["발령번호"],
                "소관부처명": info["소관부처명"],
                "현행연혁구분": "현행",
                "제개정구분코드": info["제개정구분코드"],
                "제개정구분명": info["제개정구분명"],
                "행정규칙ID": info["행정규칙ID"],
                "행정규칙상세링크": f"/DRF/lawService.do?OC={{oc}}&target=admrul&ID={serial}&type=HTML&mobileYn=",
                "시행일자": info["시행일자"],
                "생성일자": info["생성일자"],
            }
        return corpus


LISTING = {  # target → (root, item, key field, date field, date-range parameter, link field)
    "law": ("LawSearch", "law", "법령일련번호", "공포일자", "ancYd", "법령상세링크"),
    "prec": ("PrecSearch", "prec", "판례일련번호", "선고일자", "prncYd", "판례상세링크"),
    "admrul": ("AdmRulSearch", "admrul", "행정규칙일련번호", "발령일자", "prmlYd", "행정규칙상세링크"),
}


class FakeDrf:
    """A scripted stand-in for www.law.go.kr/DRF (see the module doc)."""

    def __init__(self, corpus: DrfCorpus, base_url: str) -> None:
        self.corpus = corpus
        self.base_url = base_url
        self.listed: dict[str, list[str]] = {
            "law": list(DEFAULT_LAWS),
            "prec": sorted(corpus.prec_bodies),
            "admrul": sorted(corpus.admrul_bodies),
        }
        self.faults: dict[tuple[str, str], list[str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.slow_s = 0.6
        self._lock = threading.Lock()

    # --- what tests look at ---------------------------------------------------------------------------------------

    def fetched(self, target: str | None = None) -> list[str]:
        """Keys of the lawService.do requests so far (every attempt, retries included)."""
        return [
            args.get("MST") or args.get("ID", "")
            for endpoint, args in self.requests
            if endpoint == "lawService.do" and (target is None or args.get("target") == target)
        ]

    def searches(self) -> list[dict[str, str]]:
        return [args for endpoint, args in self.requests if endpoint == "lawSearch.do"]

    # --- serving --------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        endpoint = request.path.rsplit("/", 1)[-1]
        args = {k: v for k, v in request.args.items()}
        with self._lock:
            self.requests.append((endpoint, args))
        target = args.get("target", "")
        fmt = args.get("type", "XML").upper()
        key = "search" if endpoint == "lawSearch.do" else (args.get("MST") or args.get("ID") or "")
        with self._lock:
            queue = self.faults.get((target, key)) or self.faults.get((target, "*"))
            fault = queue.pop(0) if queue else "ok"
        if args.get("OC") != FAKE_OC:
            return Response(AUTH_FAILURE, 200, content_type=JSON_TYPE)  # byte-identical for any bad key
        if fault == "timeout":
            time.sleep(self.slow_s)
        elif fault != "ok":
            faulty = self._fault(fault, target)
            if faulty is not None:
                return faulty
        if endpoint == "lawSearch.do":
            return self._search(target, fmt, args)
        if endpoint == "lawService.do":
            response = self._service(target, fmt, key)
            if fault in ("truncated", "malformed") and response.status_code == 200:
                data = response.get_data()
                data = data[: len(data) // 2] if fault == "truncated" else data.replace(b"</", b"</ broken", 3)
                response = Response(data, 200, content_type=response.content_type)
            return response
        return Response(b"not here", 404)

    def _fault(self, fault: str, target: str) -> Response | None:
        if fault == "500":
            return Response(b"Internal Server Error", 500)
        if fault == "503":
            return Response(b"busy", 503, headers={"Retry-After": "2"})
        if fault == "403":
            return Response(b"Forbidden", 403)
        if fault == "maintenance":
            return Response(MAINTENANCE_PAGE, 200, content_type=HTML_TYPE)
        if fault == "auth":
            return Response(AUTH_FAILURE, 200, content_type=JSON_TYPE)
        if fault == "empty":
            return Response(b"", 200, content_type=XML_TYPE)
        if fault == "notfound":
            return self._no_match(target, "XML")
        if fault in ("truncated", "malformed"):
            return None  # applied to the real body
        raise AssertionError(f"unknown fault {fault!r}")

    def _no_match(self, target: str, fmt: str) -> Response:
        subject = NO_MATCH_NAME.get(target, "법령이")
        text = f"일치하는 {subject} 없습니다.  {subject[:-1]}명을 확인하여 주십시오."
        if fmt == "JSON":
            return Response(json.dumps({"Law": text}, ensure_ascii=False).encode(), 200, content_type=JSON_TYPE)
        return Response(f'<?xml version="1.0" encoding="utf-8"?><Law>{text}</Law>'.encode(), content_type=XML_TYPE)

    def _service(self, target: str, fmt: str, key: str) -> Response:
        if target == "law" and key in self.corpus.law_bodies and fmt == "XML":
            return Response(self.corpus.law_bodies[key], 200, content_type=XML_TYPE)
        store = {"prec": self.corpus.prec_bodies, "admrul": self.corpus.admrul_bodies}.get(target, {})
        if key in store:
            return Response(store[key][fmt], 200, content_type=XML_TYPE if fmt == "XML" else JSON_TYPE)
        return self._no_match(target, fmt)

    def _rows(self, target: str) -> dict[str, dict[str, str]]:
        return {"law": self.corpus.law_rows, "prec": self.corpus.prec_rows, "admrul": self.corpus.admrul_rows}[target]

    def _search(self, target: str, fmt: str, args: dict[str, str]) -> Response:
        root, item, key_field, date_field, date_param, link_field = LISTING[target]
        rows = [self._rows(target)[k] for k in self.listed[target]]
        if args.get(date_param):
            lo, _, hi = args[date_param].partition("~")
            rows = [r for r in rows if lo <= r[date_field].replace(".", "") <= hi]
        if args.get("sort") == "ddes":
            rows.sort(key=lambda r: (r[date_field].replace(".", ""), int(r[key_field])), reverse=True)
        display = int(args.get("display", 20))
        page = int(args.get("page", 1))
        chunk = rows[(page - 1) * display : page * display]
        items = [{**r, link_field: r[link_field].format(oc=args.get("OC", ""))} for r in chunk]
        keyword = args.get("query", "*")
        if fmt == "JSON":
            listed: Any = [{"id": str(i + 1), **r} for i, r in enumerate(items)]
            payload: dict[str, Any] = {
                "target": target,
                "키워드": keyword,
                "section": "lawNm",
                "totalCnt": str(len(rows)),
                "page": str(page),
            }
            if listed:
                payload[item] = listed if len(listed) > 1 else listed[0]
            return Response(json.dumps({root: payload}, ensure_ascii=False).encode(), 200, content_type=JSON_TYPE)
        # The real server echoes the query into 키워드 with "·" as an unescaped "&middot;" (not well-formed XML).
        parts = [
            f"<target>{target}</target><키워드>{escape(keyword).replace('·', '&middot;')}</키워드>",
            f"<section>lawNm</section><totalCnt>{len(rows)}</totalCnt><page>{page}</page>",
            f"<numOfRows>{len(items)}</numOfRows><resultCode>00</resultCode><resultMsg>success</resultMsg>",
        ]
        for i, r in enumerate(items):
            fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.items())
            parts.append(f'<{item} id="{i + 1}">{fields}</{item}>')
        xml = f'<?xml version="1.0" encoding="UTF-8"?><{root}>{"".join(parts)}</{root}>'
        return Response(xml.encode(), 200, content_type=XML_TYPE)


@pytest.fixture(scope="session")
def lawgo_dir(shared_dir: Path) -> Path:
    return shared_dir / "lawgo"


@pytest.fixture(scope="session")
def drf_corpus(lawgo_dir: Path) -> DrfCorpus:
    return DrfCorpus.load(lawgo_dir)


@pytest.fixture(scope="session")
def drf_server() -> Iterator[HTTPServer]:
    server = HTTPServer(threaded=True)  # threaded: a slow (timeout) answer must not block the retry
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def drf(drf_server: HTTPServer, drf_corpus: DrfCorpus) -> Iterator[FakeDrf]:
    fake = FakeDrf(drf_corpus, drf_server.url_for("/DRF"))
    drf_server.clear()
    drf_server.expect_request(re.compile(r"^/DRF/")).respond_with_handler(fake.handle)
    yield fake
    drf_server.clear()


@dataclass
class SleepRecorder:
    """A no-op ``sleep`` that remembers what it was asked to wait."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(drf: FakeDrf, sleeps: SleepRecorder) -> Callable[..., LawGoClient]:
    """A client on the fake server with fast, recorded backoff; keyword arguments override the defaults."""
    clients: list[LawGoClient] = []

    def make(**overrides: Any) -> LawGoClient:
        options: dict[str, Any] = {
            "oc": FAKE_OC,
            "base_url": drf.base_url,
            "timeout": 5.0,
            "max_retries": 3,
            "backoff_base_s": 0.5,
            "backoff_max_s": 4.0,
            "rate_limit_per_s": 0.0,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = LawGoClient(**options)
        clients.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in clients:
        client.close()
