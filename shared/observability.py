"""The one Logger, Tracer and Metrics of the service, configured from Powertools environment variables."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="confab")
tracer = Tracer(service="confab")
metrics = Metrics(namespace="Confab", service="confab")
