"""What a call is, judged by the shape of its path on any provider kind. Pure.

An OpenAI-shaped call to an `anthropic` provider (Anthropic's OpenAI-compatible endpoint) is metered as
OpenAI; a Messages-shaped call to an `openai` provider (a host that speaks Anthropic's API) as Anthropic;
Gemini's `models/{model}:generateContent` and Ollama's `api/chat` likewise on any provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

OPENAI = "openai"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
OLLAMA = "ollama"

# Billed per token, with usage in the answer.
_TOKEN_ENDPOINTS = {
    "chat/completions": OPENAI,
    "completions": OPENAI,
    "responses": OPENAI,
    "embeddings": OPENAI,
    "messages": ANTHROPIC,
}
# Billed per image, per character, per minute or per token: priced by metering.media, reserved from above.
_FLAT_ENDPOINTS = {
    "images/generations": "json",
    "images/edits": "multipart",
    "images/variations": "multipart",
    "audio/speech": "json",
    "audio/transcriptions": "multipart",
    "audio/translations": "multipart",
}
# POSTs known to cost nothing: forwarded under any cap. Their JSON bodies are still read (tags, model).
_FREE_POSTS = {
    "messages/count_tokens": ANTHROPIC,
    "responses/input_tokens": OPENAI,
    "moderations": OPENAI,
}
# Gemini names the model in the path: v1beta/models/{model}:{method} (v1 and v1alpha alike).
_GEMINI_PATH = re.compile(r"(?:v1|v1beta|v1alpha)/models/([^/:]+):([A-Za-z]+)")
_GEMINI_METHODS = {
    "generateContent": True,
    "streamGenerateContent": True,
    "embedContent": True,
    "batchEmbedContents": True,
    "countTokens": False,  # free
}
# Ollama's own API; its OpenAI-compatible /v1 is metered as OpenAI.
_OLLAMA_ENDPOINTS = frozenset({"api/chat", "api/generate", "api/embed", "api/embeddings"})
# Prefixes under which a host serves the OpenAI API below its root (Gemini's OpenAI-compatible endpoint).
_OPENAI_PREFIXES = ("v1/", "v1beta/openai/")
# Methods that never start billable work at these APIs.
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the path below the base URL with a leading "v1/" dropped: the record's `endpoint`
    shape: str | None  # "openai" | "anthropic": the request, answer and usage format; None: unknown
    metered: bool  # picometer reads its usage (or prices it per call) and guards it with the budgets
    free: bool  # known to cost nothing
    body: str  # "json" | "multipart" | "" (forwarded as bytes)
    flat: bool = False  # images and audio: one conservative price per call
    deployment: str | None = None  # Azure's classic path names a deployment, not a model
    model: str | None = None  # Gemini names the model in the path, not the body
    batch_results: bool = False  # a batch's results: each line metered as it passes (metering.batch)

    @property
    def unmetered(self) -> bool:
        """A call that may cost money and that picometer cannot meter (batches, files, unknown POSTs)."""
        return not self.metered and not self.free


def endpoint_name(rest: str) -> str:
    for prefix in _OPENAI_PREFIXES:
        if rest.startswith(prefix):
            return rest[len(prefix) :]
    return rest


_AZURE = "openai/deployments/"


def _batch_results(name: str) -> str | None:
    """The shape of a path that fetches batch results: Anthropic's results, or an OpenAI file's content (an
    output file of a batch holds results; any other file passes through with nothing in it to count)."""
    parts = name.split("/")
    if len(parts) == 4 and parts[:2] == ["messages", "batches"] and parts[3] == "results" and parts[2]:
        return ANTHROPIC
    if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and parts[1]:
        return OPENAI
    return None


def classify(rest: str, method: str) -> Endpoint:
    """The endpoint of a canonical path below a provider's base URL, for this HTTP method."""
    if rest.startswith(_AZURE):
        # Azure OpenAI's classic path: /openai/deployments/{name}/chat/completions?api-version=...
        deployment, _, tail = rest[len(_AZURE) :].partition("/")
        if deployment and tail:
            e = classify(tail, method)
            if e.metered or e.free:
                return replace(e, deployment=deployment)
    name = endpoint_name(rest)
    if method == "GET":
        shape = _batch_results(name)
        if shape is not None:
            return Endpoint(name, shape, metered=False, free=True, body="", batch_results=True)
    if method in _READ_METHODS:
        return Endpoint(name, None, metered=False, free=True, body="")
    if method == "POST":
        gemini = _GEMINI_PATH.fullmatch(rest)
        if gemini is not None and gemini.group(2) in _GEMINI_METHODS:
            model, verb = gemini.groups()
            metered = _GEMINI_METHODS[verb]
            return Endpoint(verb, GEMINI, metered=metered, free=not metered, body="json", model=model)
        if name in _OLLAMA_ENDPOINTS:
            return Endpoint(name, OLLAMA, metered=True, free=False, body="json")
        shape = _TOKEN_ENDPOINTS.get(name)
        if shape is not None:
            return Endpoint(name, shape, metered=True, free=False, body="json")
        flat = _FLAT_ENDPOINTS.get(name)
        if flat is not None:
            return Endpoint(name, OPENAI, metered=True, free=False, body=flat, flat=True)
        shape = _FREE_POSTS.get(name)
        if shape is not None:
            return Endpoint(name, shape, metered=False, free=True, body="json")
    return Endpoint(name, None, metered=False, free=False, body="")
