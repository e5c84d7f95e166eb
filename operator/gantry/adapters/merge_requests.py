"""A proposal's merge request (GitLab) or pull request (GitHub), opened through the host's API.

One per proposal branch: a request already open for the branch is fine (a retried effect opens no
second one). Every call has a timeout; a host that fails is an error for the caller to report: the
branch is pushed already, and a person can still open the request by hand.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from gantry.domain.inputs.git_target import MergeRequestApi

TIMEOUT = 10.0


class MergeRequestError(Exception):
    """The git host refused or did not answer; words for a person."""


def open_request(
    api: MergeRequestApi, token: str, branch: str, target: str, title: str, body: str
) -> str | None:
    """Open it; its web address (None when the host did not say, or one was open already)."""
    if api.api == "GitLab":
        url = f"{api.url}/projects/{quote(api.project, safe='')}/merge_requests"
        payload: dict[str, Any] = {
            "source_branch": branch,
            "target_branch": target,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        headers = {"PRIVATE-TOKEN": token}
        already = (409,)
    else:
        url = f"{api.url}/repos/{api.project}/pulls"
        payload = {"head": branch, "base": target, "title": title, "body": body}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        already = (422,)
    try:
        answer = requests.post(url, json=payload, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise MergeRequestError(f"{api.api} at {api.url}: {error}") from None
    if answer.status_code in already and "already exist" in answer.text:
        return None
    if answer.status_code >= 300:
        raise MergeRequestError(f"{api.api} at {api.url} answered {answer.status_code}: {answer.text[:200]}")
    said = answer.json() if answer.content else {}
    return str(said.get("web_url") or said.get("html_url") or "") or None
