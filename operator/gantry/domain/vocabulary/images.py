"""Container image references pinned by digest.

The CRD schema already refuses tags at admission; this module is the same rule in code so
the operator never acts on a reference that slipped past (e.g. a CRD installed without rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Same expression as the Release CRD's CEL rule on spec.artifacts[].image.
DIGEST_REF = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"@(?P<digest>sha256:[a-f0-9]{64})$"
)


@dataclass(frozen=True)
class ImageRef:
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """The form people read in tables: repository@sha256:1234abcd."""
        return f"{self.repository}@{self.digest[:15]}"


def parse_pinned(reference: str) -> ImageRef | None:
    """The reference as an ImageRef, or None when it is not pinned by digest."""
    match = DIGEST_REF.match(reference)
    if match is None:
        return None
    return ImageRef(match["repository"], match["digest"])


def short_digest(digest: str) -> str:
    """The one way Gantry shortens a digest for people: the algorithm and the first 12 hex, as
    container tools do (sha256:2d194184b067). Scripts get the full digest (-o json)."""
    algorithm, _, hexes = digest_of(digest).rpartition(":")
    return f"{algorithm or 'sha256'}:{hexes[:12]}"


def digest_of(reference: str) -> str:
    """The digest part of a pinned reference: what stays the same when an image is copied by digest."""
    return reference.rsplit("@", 1)[-1]
