"""A fake www.law.go.kr/DRF for tests and ``scripts/chaos_lawgo.py``: a real HTTP server on 127.0.0.1 with a
programmable fault plan.

:class:`FakeLawGo` answers ``/DRF/lawService.do`` with stored bodies (by ``MST``/``ID`` and ``type``) and
``/DRF/lawSearch.do`` with listing pages generated in the real shapes (``LawSearch``/``PrecSearch``/``AdmRulSearch``;
``page``, ``display``, ``sort=ddes`` and the date-range filters ``prncYd``/``ancYd``/``prmlYd`` honoured; the
caller's OC echoed inside ``…상세링크`` as the real API does). A wrong ``OC`` gets the documented, byte-identical
"user verification failed" envelope.

Bodies: :meth:`DrfCorpus.load` reads the 64 *recorded* law XML bodies and the 6 *reconstructed* precedent bodies of
``../shared/lawgo`` plus the hand-built admin-rule fixtures; :func:`synth_precedent` writes more precedents in the
documented ``PrecService`` shape (invented text) for listings of any size.

Fault plan — a fault is a string (see :data:`FAULTS`); which one a request gets, first match wins:

1. ``fault_at[n]``: the n-th request of this server (1-based, every endpoint);
2. ``faults[(target, key)]``: a queue, one entry consumed per request; ``key`` is a body id (``MST``/``ID``),
   ``"search:{page}"`` or ``"search"`` for listing pages, ``"*"`` for any request of the target;
3. ``always[(target, key)]``: the same keys, never consumed (a permanent fault).

Echo faults put the request's query string — the OC with it — into each error shape a hostile or buggy server might
use, so tests can prove the key never gets further than the client.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

FAKE_OC = "SECRETOC123"
ADMRUL_FIXTURES = Path(__file__).parent / "sources" / "lawgo" / "fixtures" / "admrul"

XML_TYPE = "text/xml;charset=UTF-8"
JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"
TEXT_TYPE = "text/plain;charset=UTF-8"

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

#: Faults that put the request (query string, OC included) into an error answer.
ECHO_FAULTS = (
    "echo-text",  # HTTP 200 text/plain: the raw query string → "not XML (starts with 'OC=…&target=…"
    "echo-urlencoded",  # HTTP 200 text/plain: the query string URL-encoded once more (OC%3D…%26target%3D…)
    "echo-json",  # HTTP 200 JSON {"error": …, "request": …, "oc": …} (not an envelope: a parse failure)
    "echo-auth",  # the user-verification envelope with "(OC=…&target=…)" in its result
    "echo-title",  # HTTP 200 HTML whose <title> reads "Request rejected: OC=…"
    "echo-envelope",  # an XML <law><result>…OC=…</result><msg>…</msg></law> failure envelope
    "echo-notfound",  # the no-match body with the request appended
    "echo-reason",  # HTTP 400 whose reason phrase carries the query string
    "echo-500",  # HTTP 500 whose body is the query string
)
#: Every fault :meth:`FakeLawGo.respond` knows.
FAULTS = (
    "ok",
    "500",
    "503",  # with Retry-After: 2
    "403",
    "404",  # an HTML 404 page (a wrong base URL)
    "maintenance",  # HTTP 200 HTML maintenance page
    "auth",
    "empty",
    "notfound",
    "timeout",  # answer normally after slow_s (longer than the client's timeout)
    "truncated",  # the real body cut in half; "truncated:N" cuts it at N bytes
    "truncated-utf8",  # the real body cut inside its last multi-byte UTF-8 sequence
    "malformed",
    "garbage",  # HTTP 200 XML content type, bytes that are no document
    *ECHO_FAULTS,
)


def _tag(xml: str, name: str) -> str:
    m = re.search(rf"<{name}(?:\s[^>]*)?>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml, re.S)
    return m.group(1).strip() if m else ""


def prec_row(doc: dict[str, str], source: str = "대법원") -> dict[str, str]:
    """The listing row of a precedent, from its ``PrecService`` fields."""
    serial, date = doc["판례정보일련번호"], doc["선고일자"]
    return {
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
        "데이터출처명": source,
        "판례상세링크": f"/DRF/lawService.do?OC={{oc}}&target=prec&ID={serial}&type=HTML&mobileYn=",
    }


_SECTIONS = ("사건명", "판시사항", "판결요지", "참조조문", "참조판례", "판례내용")


def synth_precedent(serial: int | str, decided: dt.date, *, paragraphs: int = 12) -> tuple[dict[str, bytes], dict]:
    """An invented precedent in the documented ``PrecService`` shape: ``({"XML": …, "JSON": …}, PrecService dict)``.

    The text is Korean (multi-byte UTF-8, so a cut can land inside a character); only the structure is real.
    """
    serial = str(serial)
    body = "<br/>".join(
        f"{i + 1}. 원심은 피고가 원고에게 {serial}번 계약에 따른 대금을 지급할 의무가 있다고 판단하였다. "
        "그러나 기록에 의하면 그 판단에는 계약 해석에 관한 법리를 오해한 잘못이 있다."
        for i in range(paragraphs)
    )
    doc = {
        "판례정보일련번호": serial,
        "사건명": f"물품대금 ({serial})",
        "사건번호": f"{decided.year}다{serial[-5:]}",
        "선고일자": f"{decided:%Y%m%d}",
        "선고": "선고",
        "법원명": "대법원",
        "법원종류코드": "400201",
        "사건종류명": "민사",
        "사건종류코드": "400101",
        "판결유형": "판결",
        "판시사항": f"[1] 계약 해석의 방법 ({serial})\n[2] 대금 지급 의무의 범위",
        "판결요지": f"[1] 계약의 해석은 당사자가 표시행위에 부여한 객관적인 의미를 밝히는 것이다 ({serial}).",
        "참조조문": "[1] 민법 제105조 / [2] 민법 제390조",
        "참조판례": "[1] 대법원 2001. 3. 23. 선고 2000다11560 판결",
        "판례내용": "【원고, 상고인】 원고<br/>【피고, 피상고인】 피고<br/>【이    유】<br/>" + body,
    }
    fields = "".join(
        f"<{k}><![CDATA[{v}]]></{k}>" if k in _SECTIONS else f"<{k}>{escape(v)}</{k}>" for k, v in doc.items()
    )
    xml = f'<?xml version="1.0" encoding="UTF-8"?><PrecService>{fields}</PrecService>'.encode()
    js = json.dumps({"PrecService": doc}, ensure_ascii=False).encode()
    return {"XML": xml, "JSON": js}, doc


@dataclass
class DrfCorpus:
    """Bodies and listing rows."""

    law_bodies: dict[str, bytes] = field(default_factory=dict)  # MST → XML
    law_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    prec_bodies: dict[str, dict[str, bytes]] = field(default_factory=dict)  # 판례일련번호 → {"XML": …, "JSON": …}
    prec_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    admrul_bodies: dict[str, dict[str, bytes]] = field(default_factory=dict)  # 행정규칙일련번호 → {fmt: bytes}
    admrul_rows: dict[str, dict[str, str]] = field(default_factory=dict)

    def copy(self) -> DrfCorpus:
        """A copy whose dicts can be changed without touching this one (bodies are shared, immutable bytes)."""
        return replace(self, **{name: dict(getattr(self, name)) for name in self.__dataclass_fields__})

    def add_precedent(self, serial: int | str, decided: dt.date, **kwargs: Any) -> str:
        """Add a :func:`synth_precedent`; returns its 판례일련번호."""
        bodies, doc = synth_precedent(serial, decided, **kwargs)
        self.prec_bodies[str(serial)] = bodies
        self.prec_rows[str(serial)] = prec_row(doc)
        return str(serial)

    @classmethod
    def load(cls, lawgo: Path, admrul_fixtures: Path = ADMRUL_FIXTURES) -> DrfCorpus:
        """The bodies of ``../shared/lawgo`` (``lawgo``) and the admin-rule fixtures."""
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
            corpus.prec_rows[serial] = prec_row(json.loads(path.read_bytes())["PrecService"])
        for path in sorted(admrul_fixtures.glob("*.json")):
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


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = XML_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    reason: str | None = None  # the HTTP reason phrase (None: the standard one)


def _cut_in_utf8_sequence(data: bytes) -> bytes:
    """``data`` cut just after the lead byte of its last multi-byte UTF-8 character (an incomplete sequence)."""
    for i in range(len(data) - 1, 0, -1):
        if data[i] >= 0xC0:  # a lead byte of a 2-4 byte sequence
            return data[: i + 1]
    return data[: len(data) // 2]


class FakeLawGo:
    """A scripted stand-in for www.law.go.kr/DRF (see the module doc). Serve it with :func:`serve`."""

    def __init__(self, corpus: DrfCorpus, *, oc: str = FAKE_OC, base_url: str = "") -> None:
        self.corpus = corpus.copy()
        self.oc = oc
        self.base_url = base_url
        self.listed: dict[str, list[str]] = {
            "law": [k for k in DEFAULT_LAWS if k in self.corpus.law_bodies],
            "prec": sorted(self.corpus.prec_bodies),
            "admrul": sorted(self.corpus.admrul_bodies),
        }
        self.faults: dict[tuple[str, str], list[str]] = {}
        self.always: dict[tuple[str, str], str] = {}
        self.fault_at: dict[int, str] = {}
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

    def publish_precedent(self, serial: int | str, decided: dt.date, **kwargs: Any) -> str:
        """Add a synthetic precedent to the corpus and to the listing (a decision published now)."""
        key = self.corpus.add_precedent(serial, decided, **kwargs)
        self.listed["prec"].append(key)
        return key

    # --- serving --------------------------------------------------------------------------------------------------

    def _fault_for(self, number: int, target: str, keys: list[str]) -> str:
        with self._lock:
            if number in self.fault_at:
                return self.fault_at[number]
            for key in keys:
                queue = self.faults.get((target, key))
                if queue:
                    return queue.pop(0)
            for key in keys:
                if (target, key) in self.always:
                    return self.always[(target, key)]
        return "ok"

    def respond(self, path: str, query: str) -> Reply:
        """The answer to ``GET path?query`` (``query`` as sent, still URL-encoded)."""
        endpoint = path.rsplit("/", 1)[-1]
        args = dict(parse_qsl(query, keep_blank_values=True))
        with self._lock:
            self.requests.append((endpoint, args))
            number = len(self.requests)
        target = args.get("target", "")
        fmt = args.get("type", "XML").upper()
        if endpoint == "lawSearch.do":
            keys = [f"search:{args.get('page', '1')}", "search", "*"]
        else:
            keys = [args.get("MST") or args.get("ID") or "", "*"]
        fault = self._fault_for(number, target, keys)
        if args.get("OC") != self.oc:
            return Reply(200, AUTH_FAILURE, JSON_TYPE)  # byte-identical for any bad key
        if fault == "timeout":
            time.sleep(self.slow_s)
        elif fault != "ok":
            faulty = self._fault(fault, target, query)
            if faulty is not None:
                return faulty
        if endpoint == "lawSearch.do":
            reply = self._search(target, fmt, args)
        elif endpoint == "lawService.do":
            reply = self._service(target, fmt, keys[0])
        else:
            return Reply(404, b"<html><head><title>404 Not Found</title></head></html>", HTML_TYPE)
        if fault.startswith(("truncated", "malformed")) and reply.status == 200:
            data = reply.body
            if fault == "truncated-utf8":
                data = _cut_in_utf8_sequence(data)
            elif fault.startswith("truncated"):
                data = data[: int(fault.partition(":")[2] or len(data) // 2)]
            else:
                data = data.replace(b"</", b"</ broken", 3)
            reply = replace(reply, body=data)
        return reply

    def _fault(self, fault: str, target: str, query: str) -> Reply | None:
        decoded = unquote(query)
        simple = {
            "500": Reply(500, b"Internal Server Error", TEXT_TYPE),
            "503": Reply(503, b"busy", TEXT_TYPE, headers=(("Retry-After", "2"),)),
            "403": Reply(403, b"Forbidden", TEXT_TYPE),
            "404": Reply(404, b"<html><head><title>404 Not Found</title></head></html>", HTML_TYPE),
            "maintenance": Reply(200, MAINTENANCE_PAGE, HTML_TYPE),
            "auth": Reply(200, AUTH_FAILURE, JSON_TYPE),
            "empty": Reply(200, b"", XML_TYPE),
            "garbage": Reply(200, bytes(range(256)) * 8, XML_TYPE),
            "echo-text": Reply(200, query.encode(), TEXT_TYPE),
            "echo-urlencoded": Reply(200, quote(query, safe="").encode(), TEXT_TYPE),
            "echo-json": Reply(
                200,
                json.dumps({"error": "bad request", "request": query, "decoded": decoded}).encode(),
                JSON_TYPE,
            ),
            "echo-auth": Reply(
                200,
                json.dumps(
                    {"result": f"사용자 정보 검증에 실패하였습니다. ({decoded})", "msg": f"요청: {query}"},
                    ensure_ascii=False,
                ).encode(),
                JSON_TYPE,
            ),
            "echo-title": Reply(
                200,
                f"<!DOCTYPE html><html><head><title>Request rejected: {escape(decoded)}</title></head>"
                f"<body><p>{escape(query)}</p></body></html>".encode(),
                HTML_TYPE,
            ),
            "echo-envelope": Reply(
                200,
                f'<?xml version="1.0" encoding="UTF-8"?><law><result>실패 ({escape(decoded)})</result>'
                f"<msg>잘못된 요청입니다: {escape(query)}</msg></law>".encode(),
                XML_TYPE,
            ),
            "echo-notfound": Reply(
                200,
                f'<?xml version="1.0" encoding="utf-8"?><Law>일치하는 {NO_MATCH_NAME.get(target, "법령이")} 없습니다.'
                f"  요청: {escape(decoded)}</Law>".encode(),
                XML_TYPE,
            ),
            "echo-reason": Reply(400, b"bad request", TEXT_TYPE, reason=f"Bad Request {query}"),
            "echo-500": Reply(500, f"Internal Server Error for {decoded}".encode(), TEXT_TYPE),
        }
        if fault in simple:
            return simple[fault]
        if fault == "notfound":
            return self._no_match(target, "XML")
        if fault.startswith(("truncated", "malformed")):
            return None  # applied to the real body
        raise AssertionError(f"unknown fault {fault!r}")

    def _no_match(self, target: str, fmt: str) -> Reply:
        subject = NO_MATCH_NAME.get(target, "법령이")
        text = f"일치하는 {subject} 없습니다.  {subject[:-1]}명을 확인하여 주십시오."
        if fmt == "JSON":
            return Reply(200, json.dumps({"Law": text}, ensure_ascii=False).encode(), JSON_TYPE)
        return Reply(200, f'<?xml version="1.0" encoding="utf-8"?><Law>{text}</Law>'.encode(), XML_TYPE)

    def _service(self, target: str, fmt: str, key: str) -> Reply:
        if target == "law" and key in self.corpus.law_bodies and fmt == "XML":
            return Reply(200, self.corpus.law_bodies[key], XML_TYPE)
        store = {"prec": self.corpus.prec_bodies, "admrul": self.corpus.admrul_bodies}.get(target, {})
        if key in store:
            return Reply(200, store[key][fmt], XML_TYPE if fmt == "XML" else JSON_TYPE)
        return self._no_match(target, fmt)

    def _rows(self, target: str) -> dict[str, dict[str, str]]:
        return {"law": self.corpus.law_rows, "prec": self.corpus.prec_rows, "admrul": self.corpus.admrul_rows}[target]

    def _search(self, target: str, fmt: str, args: dict[str, str]) -> Reply:
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
            return Reply(200, json.dumps({root: payload}, ensure_ascii=False).encode(), JSON_TYPE)
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
        return Reply(200, xml.encode(), XML_TYPE)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLawGo  # set on the per-server subclass
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        reply = self.fake.respond(parts.path, parts.query)
        try:
            self.send_response(reply.status, reply.reason)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the server side sees the key; it must not end up in the test's captured output


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out close their socket mid-answer: expected here


@contextmanager
def serve(fake: FakeLawGo) -> Iterator[FakeLawGo]:
    """Serve ``fake`` on 127.0.0.1 (a free port) in a background thread; sets ``fake.base_url`` (…/DRF)."""
    handler = type("FakeLawGoHandler", (_Handler,), {"fake": fake})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/DRF"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
