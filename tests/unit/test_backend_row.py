"""The one encoding of a Backends row (SPEC.md "Backends table"): ``Backend.from_row`` / ``to_row``."""

from __future__ import annotations

from cas_download.data.items import from_item, to_item
from cas_download.domain import Backend, ValidationStatus

WRITTEN = Backend(
    id="b-1",
    org_id="org-1",
    name="primary",
    provider="AWS-S3",
    location="bucket-1",
    secret_name="cas/org-1/primary",
    region="eu-west-1",
    key_prefix="cas/",
    is_default=True,
    validation_status=ValidationStatus.INVALID,
    validation_error="credentials_invalid: key deleted",
    validated_at="2025-06-01T00:00:00.000000Z",
    created_at="2025-01-01T00:00:00.000000Z",
)


def test_a_row_written_and_read_back_through_dynamodb_items_is_the_same_backend() -> None:
    # Given a backend written as a DynamoDB item
    item = to_item(WRITTEN.to_row())
    # When it is read back
    read = Backend.from_row(from_item(item))
    # Then nothing was lost or changed
    assert read == WRITTEN


def test_only_true_flags_and_present_values_are_written() -> None:
    # Given a backend that is neither default nor fallback, never validated, without prefix or region
    plain = Backend("b-2", "org-1", "plain", "OCI", "registry.example/cas", "cas/org-1/plain")
    # When it is written
    item = to_item(plain.to_row())
    # Then the absent values are absent attributes, as the spec reads a missing attribute
    assert set(item) == {"id", "org_id", "name", "provider", "location", "secret_name", "created_at"}


def test_missing_attributes_read_as_the_spec_reads_them() -> None:
    # Given the smallest row the control plane may write
    read = Backend.from_row({"id": "b-3", "org_id": "org-1"})
    # Then the name is the id, no flag is set, the status is OK and the backend is live
    assert read.name == "b-3"
    assert (read.is_default, read.is_fallback) == (False, False)
    assert read.validation_status is None
    assert read.status is ValidationStatus.OK
    assert not read.is_invalid
    assert not read.deleted


def test_only_invalid_defers_a_backend_and_a_deletion_time_deletes_it() -> None:
    # Given rows with an unknown status, with Invalid, and with a deletion time
    unknown = Backend.from_row({"id": "a", "org_id": "o", "validation_status": "Pending"})
    invalid = Backend.from_row({"id": "b", "org_id": "o", "validation_status": "Invalid"})
    deleted = Backend.from_row({"id": "c", "org_id": "o", "deleted_at": "2025-06-01T00:00:00Z"})
    # Then only Invalid defers, and deleted_at is what deletes
    assert unknown.status is ValidationStatus.OK
    assert not unknown.is_invalid
    assert invalid.is_invalid
    assert deleted.deleted
