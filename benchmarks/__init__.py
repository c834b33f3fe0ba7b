"""Benchmark harness for cas-download (``make bench``): see benchmarks/run.py.

Lambda's layer has no awscrt, but the dev venv does (aws-sam-cli needs it) and botocore then signs S3
requests through the CRT. Turn that off before botocore is first imported, so the warm measurements
use the same signer as Lambda (the cold-start children run without the venv altogether).
"""

import os

os.environ["BOTO_DISABLE_CRT"] = "true"
