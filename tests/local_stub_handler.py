"""A handler module with no dependencies, for worker processes in tests: it answers 200 with its process id."""

from __future__ import annotations

import json
import os
from typing import Any


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"pid": os.getpid()}),
    }
