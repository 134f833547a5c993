"""A deterministic provider for `make dev`, tests and benchmarks: no network, same answer for the same input."""

from __future__ import annotations

import hashlib

from shared.providers.base import ProviderRequest, ProviderResult, TokenUsage, estimate_tokens


class LocalProvider:
    name = "local"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        digest = hashlib.sha256("\x1f".join(f"{m.role}:{m.content}" for m in request.messages).encode()).hexdigest()[:8]
        text = f"[{request.model}] You said: {last} (context {digest})"
        words = text.split()
        finish_reason = "stop"
        if len(words) > request.max_tokens:
            text = " ".join(words[: request.max_tokens])
            finish_reason = "length"
        # As a model stops at a stop sequence: the answer ends before its first one, which is left out.
        cut = min((found for found in (text.find(s) for s in request.stop) if found >= 0), default=-1)
        if cut >= 0:
            text, finish_reason = text[:cut], "stop"
        prompt_tokens = sum(estimate_tokens(m.content) for m in request.messages)
        return ProviderResult(
            text=text, usage=TokenUsage(input=prompt_tokens, output=estimate_tokens(text)), finish_reason=finish_reason
        )
