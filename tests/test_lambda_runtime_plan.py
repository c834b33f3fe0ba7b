"""What `make lambda-runtime` checks on emulated arm64 must follow the template: every function's
handler is imported there, so a new function cannot ship without loading once on Lambda's runtime."""

from __future__ import annotations

from scripts.lambda_runtime.arm64 import HANDLERS

from cas_local.template import FUNCTION_TYPE, function_properties, load_template


def test_every_function_of_the_template_is_imported_on_arm64() -> None:
    # Given the template's functions and their handlers
    document = load_template()
    handlers = {
        name: str(function_properties(document, name)["Handler"]).rsplit(".", 1)[0]
        for name, resource in document["Resources"].items()
        if resource.get("Type") == FUNCTION_TYPE
    }

    # Then the arm64 check imports each of them, and nothing the template does not ship
    assert handlers == HANDLERS
