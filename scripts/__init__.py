"""Build, check and CI scripts (never shipped to Lambda)."""
