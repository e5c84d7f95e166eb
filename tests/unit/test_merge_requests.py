"""A proposal's pull request, against a local stand-in of the git host's API."""

from __future__ import annotations

import pytest

from gantry.adapters.merge_requests import MergeRequestError, open_request
from gantry.domain.inputs.git_target import MergeRequestApi
from tests.harness.git_host import GitHost


def test_a_github_pull_request_is_opened_once_per_branch() -> None:
    with GitHost() as github:
        api = MergeRequestApi("GitHub", github.url, "team/deploy", "gh-token")
        opened = open_request(
            api, "ghp_x", "gantry/team-shop-v1-staging", "main", "deploy(staging): shop v1", "why"
        )
        again = open_request(
            api, "ghp_x", "gantry/team-shop-v1-staging", "main", "deploy(staging): shop v1", "why"
        )
    assert opened == f"{github.url}/mr/1" and again is None  # the second: "already exists", fine
    path, headers, body = github.requests[0]
    assert path == "/repos/team/deploy/pulls" and headers["Authorization"] == "Bearer ghp_x"
    assert body == {
        "head": "gantry/team-shop-v1-staging",
        "base": "main",
        "title": "deploy(staging): shop v1",
        "body": "why",
    }


def test_a_host_that_does_not_answer_is_an_error_in_words() -> None:
    api = MergeRequestApi("GitLab", "http://127.0.0.1:9", "team/deploy", "t")  # nothing listens on 9
    with pytest.raises(MergeRequestError, match=r"GitLab at http://127\.0\.0\.1:9"):
        open_request(api, "t", "b", "main", "title", "body")
