"""cas-local: run cas-download on this machine, without AWS and without Docker.

Local tooling only (never shipped to Lambda): moto servers as AWS stand-ins, a storage gateway that
serves presigned URLs the way S3 does, an HTTP front end that turns requests into API Gateway HTTP API
(payload 2.0) events for the real handler, and a Docker-free ``invoke`` of the ``events/`` files.
"""
