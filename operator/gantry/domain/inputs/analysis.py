"""The bake after a production rollout: is the new version healthy, failing, or can we not tell?

Metrics that are missing, broken or drawn from too little traffic are *inconclusive*: they never
count as healthy (no silent pass) and never as a breach (no rollback on noise). What happens then
is the Pipeline's policy: hold and ask a human (default), or roll back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gantry.domain.records.decisions import Action
from gantry.domain.vocabulary.timefmt import from_rfc3339

DEFAULT_ERROR_RATE_QUERY = (
    'sum(rate(http_requests_total{namespace="{namespace}",code=~"5.."}[{window}]))'
    ' / sum(rate(http_requests_total{namespace="{namespace}"}[{window}]))'
)
DEFAULT_REQUEST_RATE_QUERY = 'sum(rate(http_requests_total{namespace="{namespace}"}[{window}]))'
EVALUATIONS_KEPT = 20


class Verdict(StrEnum):
    HEALTHY = "Healthy"
    BREACH = "Breach"
    INCONCLUSIVE = "Inconclusive"


class OnBreach(StrEnum):
    ROLLBACK = "Rollback"
    DECIDE = "Decide"  # alert and wait for a person to press one of the three buttons


class OnInconclusive(StrEnum):
    HOLD = "Hold"
    ROLLBACK = "Rollback"


@dataclass(frozen=True)
class AnalysisSpec:
    error_rate_query: str = DEFAULT_ERROR_RATE_QUERY
    request_rate_query: str = DEFAULT_REQUEST_RATE_QUERY
    threshold: float = 0.05  # error ratio above which an evaluation is a breach
    min_request_rate: float = 0.1  # requests per second below which an evaluation is inconclusive
    window: str = "1m"
    interval_seconds: int = 30
    bake_seconds: int = 600
    consecutive_breaches: int = 2
    inconclusive_limit: int = 2  # consecutive inconclusive evaluations before the policy applies
    on_breach: OnBreach = OnBreach.ROLLBACK
    on_inconclusive: OnInconclusive = OnInconclusive.HOLD
    decision_deadline_seconds: int = 900
    default_decision: Action = Action.ROLLBACK
    prometheus_url: str | None = None

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> AnalysisSpec:
        decision = raw.get("decision") or {}
        return cls(
            error_rate_query=str(raw.get("errorRateQuery") or DEFAULT_ERROR_RATE_QUERY),
            request_rate_query=str(raw.get("requestRateQuery") or DEFAULT_REQUEST_RATE_QUERY),
            threshold=float(raw.get("threshold", cls.threshold)),
            min_request_rate=float(raw.get("minRequestRate", cls.min_request_rate)),
            window=str(raw.get("window", cls.window)),
            interval_seconds=int(raw.get("intervalSeconds", cls.interval_seconds)),
            bake_seconds=int(raw.get("bakeSeconds", cls.bake_seconds)),
            consecutive_breaches=int(raw.get("consecutiveBreaches", cls.consecutive_breaches)),
            inconclusive_limit=int(raw.get("inconclusiveLimit", cls.inconclusive_limit)),
            on_breach=OnBreach(raw.get("onBreach", OnBreach.ROLLBACK)),
            on_inconclusive=OnInconclusive(raw.get("onInconclusive", OnInconclusive.HOLD)),
            decision_deadline_seconds=int(decision.get("deadlineSeconds", cls.decision_deadline_seconds)),
            default_decision=Action(decision.get("default", Action.ROLLBACK)),
            prometheus_url=(raw.get("prometheus") or {}).get("url"),
        )

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "errorRateQuery": self.error_rate_query,
            "requestRateQuery": self.request_rate_query,
            "threshold": self.threshold,
            "minRequestRate": self.min_request_rate,
            "window": self.window,
            "intervalSeconds": self.interval_seconds,
            "bakeSeconds": self.bake_seconds,
            "consecutiveBreaches": self.consecutive_breaches,
            "inconclusiveLimit": self.inconclusive_limit,
            "onBreach": str(self.on_breach),
            "onInconclusive": str(self.on_inconclusive),
            "decision": {
                "deadlineSeconds": self.decision_deadline_seconds,
                "default": str(self.default_decision),
            },
        }
        if self.prometheus_url:
            out["prometheus"] = {"url": self.prometheus_url}
        return out


@dataclass(frozen=True)
class Sample:
    """One look at Prometheus: both rates, or why there are none."""

    error_rate: float | None
    request_rate: float | None
    error: str | None = None  # Prometheus unreachable, query rejected, malformed answer


def render(template: str, *, application: str, namespace: str, version: str, window: str) -> str:
    """Fill a query template. Only these four names are replaced, so PromQL braces stay as they are."""
    values = {"application": application, "namespace": namespace, "version": version, "window": window}
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


def judge(sample: Sample, spec: AnalysisSpec) -> tuple[Verdict, str]:
    if sample.error is not None:
        return Verdict.INCONCLUSIVE, f"no metrics: {sample.error}"
    if sample.request_rate is None or _nan(sample.request_rate):
        return Verdict.INCONCLUSIVE, "no request-rate data"
    if sample.request_rate < spec.min_request_rate:
        rate, minimum = sample.request_rate, spec.min_request_rate
        return (
            Verdict.INCONCLUSIVE,
            f"too little traffic to judge: {rate:.3g} req/s < minRequestRate {minimum:g}",
        )
    if sample.error_rate is None or _nan(sample.error_rate):
        return Verdict.INCONCLUSIVE, "no error-rate data"
    if sample.error_rate > spec.threshold:
        return Verdict.BREACH, f"error rate {sample.error_rate:.2%} > threshold {spec.threshold:.2%}"
    return Verdict.HEALTHY, f"error rate {sample.error_rate:.2%} <= threshold {spec.threshold:.2%}"


def evaluation_due(evaluations: list[Mapping[str, Any]], now: datetime, spec: AnalysisSpec) -> bool:
    if not evaluations:
        return True
    last = from_rfc3339(str(evaluations[-1]["time"]))
    return now - last >= timedelta(seconds=spec.interval_seconds)


def streak(evaluations: Sequence[Mapping[str, Any]], verdict: Verdict) -> int:
    """How many of the latest evaluations in a row had this verdict."""
    count = 0
    for evaluation in reversed(evaluations):
        if evaluation.get("verdict") != verdict:
            break
        count += 1
    return count


def threshold_of(run: Mapping[str, Any]) -> float:
    """The error rate a stage run's bake is judged against: its pinned analysis's threshold."""
    return AnalysisSpec.from_spec((run.get("spec") or {}).get("analysis") or {}).threshold


def finite(value: float | None) -> float | None:
    """For status: JSON has no NaN or Infinity, and kube-apiserver refuses a body that holds one."""
    return None if value is None or _nan(value) else value


def _nan(value: float) -> bool:
    return math.isnan(value) or math.isinf(value)


def evaluate(
    analysis: Mapping[str, Any], sample: Sample, spec: AnalysisSpec, now: str
) -> tuple[list[dict[str, Any]], Verdict, str]:
    """One evaluation of a bake, appended to the ones kept: (evaluations, its verdict, its detail)."""
    verdict, detail = judge(sample, spec)
    evaluation = {
        "time": now,
        "verdict": str(verdict),
        "errorRate": finite(sample.error_rate),
        "requestRate": finite(sample.request_rate),
        "detail": detail,
    }
    return [*(analysis.get("evaluations") or []), evaluation][-EVALUATIONS_KEPT:], verdict, detail
