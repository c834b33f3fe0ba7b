"""Caller organizations from the authorizer's claim (spec: API, caller identity)."""

import pytest

from cas_download.errors import Unauthenticated
from cas_download.identity import parse_orgs


@pytest.mark.parametrize(
    ("claim", "orgs"),
    [
        ("org-a", ("org-a",)),
        ("org-a,org-b", ("org-a", "org-b")),
        ("org-a org-b", ("org-a", "org-b")),
        ("org-a, org-b", ("org-a", "org-b")),
        ("[org-a org-b]", ("org-a", "org-b")),
        ('["org-a","org-b"]', ("org-a", "org-b")),
        (["org-a", "org-b"], ("org-a", "org-b")),
        ("org-a org-a", ("org-a",)),
    ],
)
def test_every_claim_format_names_the_callers_orgs(claim: object, orgs: tuple[str, ...]) -> None:
    assert parse_orgs(claim) == orgs


@pytest.mark.parametrize("claim", [None, "", "   ", "[]", ",", 7, {"org": "a"}, [1, 2]])
def test_no_org_is_unauthenticated(claim: object) -> None:
    with pytest.raises(Unauthenticated):
        parse_orgs(claim)
