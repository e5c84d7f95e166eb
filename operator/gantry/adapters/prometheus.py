"""Prometheus: the error and request rates a bake judges, through prometheus-api-client.

Every failure mode (unreachable, slow, query rejected, malformed answer) comes back as a
Sample with `error` set, so the bake can call it inconclusive instead of crashing or passing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException
from urllib3.util.retry import Retry

from gantry.domain.inputs.analysis import Sample

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5


class PrometheusSource:
    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._clients: dict[str, PrometheusConnect] = {}

    def sample(self, url: str, error_rate_query: str, request_rate_query: str) -> Sample:
        try:
            client = self._client(url)
            request_rate = scalar(client.custom_query(request_rate_query, timeout=self.timeout))
            error_rate = scalar(client.custom_query(error_rate_query, timeout=self.timeout))
        except (PrometheusApiClientException, RequestException, ValueError, KeyError, TypeError) as error:
            log.warning("Prometheus at %s: %s", url, error)
            return Sample(None, None, error=f"{type(error).__name__}: {str(error)[:300]}")
        return Sample(error_rate=error_rate, request_rate=request_rate)

    def _client(self, url: str) -> PrometheusConnect:
        if url not in self._clients:
            # One quick retry on connection trouble; the bake itself retries every interval.
            retry = Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504])
            self._clients[url] = PrometheusConnect(url=url, disable_ssl=False, retry=retry)
        return self._clients[url]


def scalar(result: Any) -> float | None:
    """One number from an instant-vector answer: None for no series, NaN kept as NaN (inconclusive)."""
    if not isinstance(result, list):
        raise ValueError(f"unexpected answer {result!r:.100}")
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"the query returned {len(result)} series; aggregate it to one (e.g. sum(...))")
    value = float(result[0]["value"][1])
    return value if not math.isinf(value) else math.nan
