"""Another model in a call's place: a cheaper one when a cap would be passed (downgrade), another provider's when
the first is down or out of quota (fallback). Pure: an admitted request in, the request for the target out.

The target keeps the client's API shape wherever it can take it: an OpenAI-shaped call goes to any provider
kind through its OpenAI-compatible endpoint (Anthropic's /v1/chat/completions, Gemini's /v1beta/openai/...,
Ollama's /v1/...), so it needs no translation. An Anthropic Messages call to a provider of another kind is
translated to OpenAI chat (picometer.translate) and its answer translated back by the relay. Gemini's and
Ollama's own APIs go only to a provider of the same kind. What cannot be carried over faithfully is
CannotSubstitute, with the reason, and the call keeps its own fate (refused, or the provider's error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from picometer.config import Config, ProviderConfig
from picometer.gateway.body import json_bytes
from picometer.gateway.path import Route
from picometer.gateway.settle import Admitted
from picometer.metering.endpoints import ANTHROPIC, GEMINI, OLLAMA, OPENAI, Endpoint, classify
from picometer.translate import Untranslatable
from picometer.translate import request as translate_request

# Where each provider kind serves the OpenAI API below its base URL (the defaults' conventions).
_OPENAI_PREFIX = {"openai": "", "anthropic": "v1/", "gemini": "v1beta/openai/", "ollama": "v1/"}
ANTHROPIC_VERSION = (b"anthropic-version", b"2023-06-01")  # what Anthropic's API requires of every call


class CannotSubstitute(ValueError):
    """The target cannot take this call as it is; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str

    @classmethod
    def parse(cls, spec: str) -> Target:
        """ "provider/model": the model may hold slashes itself (OpenRouter's "anthropic/claude-haiku-4-5")."""
        provider, _, model = spec.partition("/")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


def substitute(req: Admitted, target: Target, config: Config) -> Admitted:
    """The request as it goes to `target`, tagged with what it came from; CannotSubstitute when it cannot."""
    provider = config.providers.get(target.provider)
    if provider is None:
        raise CannotSubstitute(f"no provider named {target.provider!r} is configured")
    key = config.provider_key(target.provider)
    if key is None and target.provider != req.route.provider:
        raise CannotSubstitute(
            f"provider {target.provider!r} has no api_key, and the client's own key is for {req.route.provider!r}"
        )
    body = req.body
    endpoint = req.endpoint
    if body is None or endpoint.shape is None or not endpoint.metered or endpoint.flat:
        raise CannotSubstitute(f"{endpoint.name} calls are not substituted")
    path, shape = _target_path(endpoint, provider, target)
    new_body: dict[str, Any]
    if shape == endpoint.shape:
        new_body = {**body, "model": target.model} if shape != GEMINI else dict(body)
    else:
        try:
            new_body = translate_request(body, endpoint.shape, shape, target.model)
        except Untranslatable as e:
            raise CannotSubstitute(str(e)) from None
    new_endpoint = classify(path, "POST")
    if new_endpoint.shape != shape:
        raise CannotSubstitute(f"{target} cannot take {endpoint.name} calls")  # a path our table does not meter
    # The client's own API and wishes: those of the request it sent, also when this one is itself a stand-in.
    client = req.client_shape or endpoint.shape
    client_usage = req.client_usage if req.client_shape else _asks_stream_usage(req, endpoint)
    hide = False
    if new_endpoint.shape == OPENAI and new_endpoint.name in ("chat/completions", "completions") and _streams(body):
        # The substitute's usage arrives only when asked: ask, and hide it unless the client asked too.
        options = new_body.get("stream_options")
        new_body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        hide = shape == client and not client_usage
    facts = replace(req.facts, provider=target.provider, endpoint=new_endpoint.name, model=target.model)
    return replace(
        req,
        facts=facts,
        route=Route(target.provider, path, req.route.workflow),
        provider=provider,
        endpoint=new_endpoint,
        content=json_bytes(new_body, ascii_only=False),
        body=new_body,
        provider_key=key if key is not None else req.provider_key,
        hide_usage_chunk=hide,
        client_shape=client if shape != client else None,
        client_usage=client_usage,
    )


def _target_path(endpoint: Endpoint, provider: ProviderConfig, target: Target) -> tuple[str, str]:
    """The path below the target's base URL, and the API shape it speaks there."""
    kind = provider.kind
    if endpoint.shape == OPENAI:
        return _OPENAI_PREFIX.get(kind, "") + endpoint.name, OPENAI
    if endpoint.shape == ANTHROPIC:
        if kind == "anthropic":
            return "v1/messages", ANTHROPIC
        return _OPENAI_PREFIX.get(kind, "") + "chat/completions", OPENAI
    if endpoint.shape == GEMINI and kind == "gemini":
        return f"v1beta/models/{target.model}:{endpoint.name}", GEMINI
    if endpoint.shape == OLLAMA and kind == "ollama":
        return endpoint.name, OLLAMA
    raise CannotSubstitute(f"a {endpoint.shape} {endpoint.name} call cannot go to a provider of kind {kind!r}")


def _streams(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def _asks_stream_usage(req: Admitted, endpoint: Endpoint) -> bool:
    """The client wants the usage of its stream: Anthropic streams always carry it; an OpenAI client asked for it
    unless admission added the ask itself (and hides the chunk)."""
    if endpoint.shape == ANTHROPIC:
        return True
    options = (req.body or {}).get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True and not req.hide_usage_chunk
