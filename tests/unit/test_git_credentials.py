"""HTTPS credentials from a Secret reach git through the origin URL, and only for https://."""

from __future__ import annotations

from gantry.adapters.git import with_credentials


def test_credentials_are_url_encoded_into_https_origins() -> None:
    url = with_credentials("https://git.example.com/shop.git", ("bot", "p@ss/w:rd"))
    assert url == "https://bot:p%40ss%2Fw%3Ard@git.example.com/shop.git"


def test_other_origins_and_missing_credentials_are_left_alone() -> None:
    assert with_credentials("/srv/git/shop.git", ("bot", "x")) == "/srv/git/shop.git"
    assert (
        with_credentials("ssh://git@git.example.com/shop.git", ("bot", "x"))
        == "ssh://git@git.example.com/shop.git"
    )
    assert with_credentials("https://git.example.com/shop.git", None) == "https://git.example.com/shop.git"
