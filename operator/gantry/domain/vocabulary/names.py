"""Kubernetes names, as the API server validates them: what a name from outside (an HTTP path, a
header) must be before it is allowed to name anything."""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(rf"^{_LABEL}$")  # a namespace: RFC 1123 label
DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")  # most objects' names: RFC 1123 subdomain


def is_namespace(text: str) -> bool:
    return len(text) <= 63 and DNS_LABEL.match(text) is not None


def is_object_name(text: str) -> bool:
    return len(text) <= 253 and DNS_SUBDOMAIN.match(text) is not None
