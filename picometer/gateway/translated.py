"""A substitute's answer in the client's API: when a downgrade or a fallback went to a model that speaks the other
API, the relay meters the answer as it came and hands the client this translation (picometer.translate)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from picometer.clock import Clock
from picometer.gateway.settle import Admitted
from picometer.metering.json_value import loads
from picometer.translate import StreamTranslator, answer


@dataclass(frozen=True, slots=True)
class Translation:
    upstream: str  # the API the substitute answers in
    client: str  # the API the client called
    model: str  # the model that answered, named in the translated answer
    include_usage: bool  # the client asked for its stream's usage
    created: int  # Unix seconds, for OpenAI's `created`

    @classmethod
    def of(cls, req: Admitted, clock: Clock) -> Translation | None:
        """None for the calls that need none (nearly all): no clock read on their way."""
        if req.client_shape is None or req.endpoint.shape is None:
            return None
        created = int(clock.now().timestamp())
        return cls(req.endpoint.shape, req.client_shape, req.facts.model or "", req.client_usage, created)

    def stream(self) -> StreamTranslator:
        return StreamTranslator(
            self.upstream, self.client, self.model, include_usage=self.include_usage, created=self.created
        )

    def whole(self, parts: list[bytes], status: int) -> list[bytes]:
        """A whole answer (or error) translated; raises Untranslatable when it holds what the client's API cannot."""
        try:
            body = loads(b"".join(parts))
        except ValueError:
            body = {"error": {"message": f"the provider answered {status} with a body that is not JSON"}}
        if status >= 400 and not (isinstance(body, dict) and "error" in body):
            body = {"error": {"message": f"the provider answered {status}"}}
        translated = answer(body, self.upstream, self.client, self.model, created=self.created)
        return [json.dumps(translated, ensure_ascii=False).encode()]
