"""Caller identity: the organizations named by the authorizer's org claim."""

from __future__ import annotations

import re

from cas_download.errors import Unauthenticated

_SEPARATORS = re.compile(r"[\s,]+")
_MAX_ORGS = 100
_MAX_ORG_ID_LENGTH = 256


def parse_orgs(claim: object) -> tuple[str, ...]:
    """Org ids from a claim value: ``"a"``, ``"a,b"``, ``"a b"``, ``"[a b]"``, ``'["a","b"]'`` or a list.

    Order is kept (it is the caller's), duplicates dropped. No usable org raises :class:`Unauthenticated`.
    """
    if isinstance(claim, str):
        tokens = _SEPARATORS.split(claim.strip().removeprefix("[").removesuffix("]"))
    elif isinstance(claim, list | tuple):
        tokens = [item for item in claim if isinstance(item, str)]
    else:
        tokens = []
    orgs: dict[str, None] = {}
    for token in tokens:
        org = token.strip().strip("\"'")
        if org and len(org) <= _MAX_ORG_ID_LENGTH and org.isprintable():
            orgs[org] = None
    if not orgs:
        raise Unauthenticated("no organization in the caller's credentials")
    if len(orgs) > _MAX_ORGS:
        raise Unauthenticated(f"the caller names more than {_MAX_ORGS} organizations")
    return tuple(orgs)
