"""A call's prompt fingerprint (its prompt_hash, its conversation, the redacted prompt), taken off the call's
admission: computed while the provider works on the call (on the event loop, between other calls' steps), or at
the latest when its record is built. For an agent's 100 KB prompt that is most of what admission would cost, and
a Pi's milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from picometer.conversation import conversation
from picometer.record import PROMPT_KEYS, prompt_hash, redacted_prompt

_KEYS = (*PROMPT_KEYS, "context")  # what the fingerprints read (Ollama's `context` names a conversation too)


class Fingerprint:
    __slots__ = ("_model", "_parts", "_redact", "conversation", "prompt", "prompt_hash")

    def __init__(self, body: Mapping[str, Any], model: str | None, redact: bool) -> None:
        # The prompt's top-level parts as they are now: what the call later sets in its body (a token cap, stream
        # options, a tool-use limit, all top-level keys) is not the prompt.
        self._parts: dict[str, Any] | None = {k: body[k] for k in _KEYS if k in body}
        self._model, self._redact = model, redact
        self.prompt_hash: str | None = None
        self.conversation: str | None = None
        self.prompt: str | None = None

    def take(self) -> Fingerprint:
        """Computed on the first call; later calls find it done."""
        parts = self._parts
        if parts is not None:
            self.prompt_hash = prompt_hash(parts)
            self.conversation = conversation(parts, self._model)
            if self._redact:
                self.prompt = redacted_prompt(parts)
            self._parts = None  # last: a failure above leaves it to be taken again
        return self
