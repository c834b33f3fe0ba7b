"""Test infrastructure: moto servers over HTTP, a World builder, API Gateway events, call counting."""
