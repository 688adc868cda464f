"""The law.go.kr DRF OPEN API source (library layer; no dagster here).

- :mod:`.client` — :class:`LawGoClient` (retries, rate limit, OC secrecy) and :class:`RawResponse`
- :mod:`.errors` — typed errors, all :class:`LawGoError`
- :mod:`.normalize` — XML/JSON → one plain shape; :func:`strip_oc`
- :mod:`.parsers` — bodies → :class:`~lexdpr_pipeline.sources.records.StatuteArticle` / ``AdminRuleArticle`` /
  ``Precedent``; listings → :class:`Listing`
- :mod:`.crawler` — :func:`crawl`: resumable, incremental raw-response store + records
"""

from lexdpr_pipeline.sources.lawgo.client import LawGoClient, RawResponse
from lexdpr_pipeline.sources.lawgo.crawler import CrawlResult, crawl, rebuild_records
from lexdpr_pipeline.sources.lawgo.errors import (
    LawGoAuthError,
    LawGoError,
    LawGoHTTPError,
    LawGoMaintenanceError,
    LawGoMalformedResponseError,
    LawGoNotFoundError,
    LawGoTransientError,
    detect_error_body,
)
from lexdpr_pipeline.sources.lawgo.normalize import as_list, strip_oc, text_of
from lexdpr_pipeline.sources.lawgo.parsers import (
    Listing,
    parse_admrul_body,
    parse_law_body,
    parse_listing,
    parse_prec_body,
)

__all__ = [
    "CrawlResult",
    "LawGoAuthError",
    "LawGoClient",
    "LawGoError",
    "LawGoHTTPError",
    "LawGoMaintenanceError",
    "LawGoMalformedResponseError",
    "LawGoNotFoundError",
    "LawGoTransientError",
    "Listing",
    "RawResponse",
    "as_list",
    "crawl",
    "detect_error_body",
    "parse_admrul_body",
    "parse_law_body",
    "parse_listing",
    "parse_prec_body",
    "rebuild_records",
    "strip_oc",
    "text_of",
]
