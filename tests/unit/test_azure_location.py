"""Azure locations as Chainloop accepts them (``pkg/blobmanager/azureblob/provider.go``): the account
name in any case, since DNS is, and sent lowercased, Azure's own spelling."""

from __future__ import annotations

import pytest

from cas_download.data.storage import azure
from cas_download.domain import AttemptFailed, AttemptReason


@pytest.mark.parametrize(
    ("location", "account_url", "account", "container"),
    [
        ("MyAcct/cas", "https://myacct.blob.core.windows.net", "myacct", "cas"),
        ("myacct/cas", "https://myacct.blob.core.windows.net", "myacct", "cas"),
        (
            "blob.core.usgovcloudapi.net/GovAcct/cas",
            "https://govacct.blob.core.usgovcloudapi.net",
            "govacct",
            "cas",
        ),
        (
            "http://127.0.0.1:10000/DevStoreAccount1/cas",
            "http://127.0.0.1:10000/devstoreaccount1",
            "devstoreaccount1",
            "cas",
        ),
    ],
)
def test_an_account_name_in_any_case_is_reached_lowercased(
    location: str, account_url: str, account: str, container: str
) -> None:
    # Given a location whose account name Chainloop accepted, in whatever case it was typed
    # When it is parsed
    parsed = azure.parse_location(location)

    # Then the account is sent lowercased, and the container as it is
    assert (parsed.account_url, parsed.account, parsed.container) == (account_url, account, container)


@pytest.mark.parametrize(
    "location",
    ["ab/cas", "my-acct/cas", "a" * 25 + "/cas", "MyAcct/Cas", "MyAcct", "http://h/{acct}/cas", "x/y/z/w"],
)
def test_a_name_azure_cannot_hold_is_unreachable(location: str) -> None:
    # Given a location Azure could never serve (short or dashed account, uppercase container, no container)
    # When it is parsed
    with pytest.raises(AttemptFailed) as raised:
        azure.parse_location(location)

    # Then the backend is unreachable, with a reason and no traceback
    assert raised.value.reason is AttemptReason.UNREACHABLE
