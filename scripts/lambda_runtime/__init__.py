"""``make lambda-runtime``: run what ships on Lambda's own runtime (CPython 3.13), on x86_64 and on
emulated arm64, in Debian trixie chroots (``python -m scripts.lambda_runtime --help``)."""
