"""Builds the client for a catalog entry; boto3 clients are made once per warm container, on first use."""

from __future__ import annotations

import threading
from typing import Any

from shared.providers.base import ModelProvider, provider_failed
from shared.providers.endpoints import check_endpoint_url
from shared.providers.local import LocalProvider
from shared.providers.openai_compatible import AddressGuard, OpenAICompatibleProvider
from shared.settings import Settings


class ProviderRegistry:
    def __init__(self, settings: Settings, *, clients: dict[str, Any] | None = None):
        self._settings = settings
        self._clients: dict[str, Any] = dict(clients or {})
        self._lock = threading.Lock()
        self._local = LocalProvider()

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                # boto3 only when a model on AWS is first called: a local-only container never imports it.
                import boto3
                from botocore.config import Config

                # One attempt: a retried read timeout would outlast the function (29 s behind API Gateway), and
                # a throttled call answers 503 with Retry-After for the client to retry.
                config = Config(
                    connect_timeout=5,
                    read_timeout=self._settings.provider_timeout_s,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                )
                self._clients[service] = boto3.client(
                    service,  # type: ignore[call-overload]
                    region_name=self._settings.aws_region,
                    config=config,
                )
            return self._clients[service]

    def for_model(
        self, provider: str, *, base_url: str | None = None, api_key_secret_arn: str | None = None
    ) -> ModelProvider:
        """The client for a catalog entry's provider kind."""
        from shared.providers.aws import BedrockProvider, SageMakerProvider

        if provider == "local":
            return self._local
        if provider == "bedrock":
            return BedrockProvider(self._client("bedrock-runtime"))
        if provider == "sagemaker":
            return SageMakerProvider(
                self._client("sagemaker-runtime"), max_response_bytes=self._settings.provider_max_response_bytes
            )
        if provider == "openai-compatible":
            if not base_url:
                raise provider_failed(provider, 502, "no_base_url")
            guard: AddressGuard | None = None if self._settings.allow_private_model_endpoints else check_endpoint_url
            return OpenAICompatibleProvider(
                base_url,
                api_key=self._api_key(api_key_secret_arn),
                timeout_s=self._settings.provider_timeout_s,
                max_response_bytes=self._settings.provider_max_response_bytes,
                guard=guard,
            )
        raise provider_failed(provider, 502, "unknown_provider")

    def _api_key(self, secret_arn: str | None) -> str | None:
        if not secret_arn:
            return self._settings.openai_compatible_api_key if self._settings.is_local else None
        from shared.secrets import secret_text

        try:
            return secret_text(secret_arn)
        except Exception:
            # The secret's name is operator data, not a provider answer; still keep it out of the response.
            raise provider_failed("openai-compatible", 503, "api_key_unavailable") from None
