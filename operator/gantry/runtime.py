"""What the handlers share for one operator run (Kopf's `memo`): adapters and the reconciler."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.alerts import Alerter, LogAlerter
from gantry.adapters.kube import Kube, load_api_client
from gantry.adapters.resources import Resources
from gantry.domain.release import Event
from gantry.reconciler import ReleaseReconciler


class Runtime(kopf.Memo):
    resources: Resources
    reconciler: ReleaseReconciler

    def connect(self, alerter: Alerter | None = None) -> None:
        self.resources = Resources(Kube(load_api_client()))
        self.reconciler = ReleaseReconciler(self.resources, alerter or LogAlerter(), post_event)


def post_event(body: Any, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
