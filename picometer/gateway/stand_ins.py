"""The models that may answer a call instead of the one asked (a provider's fallbacks, a cap's downgrade model),
and the most a call can cost at any of them: what its reservation must cover."""

from __future__ import annotations

import structlog

from picometer.clock import Clock
from picometer.config import Config
from picometer.gateway.settle import Admitted
from picometer.gateway.substitute import CannotSubstitute, Target, substitute
from picometer.metering.budget import to_pico
from picometer.metering.fees import request_tools
from picometer.metering.pricing import Pricer
from picometer.metering.worst import worst_usage

log = structlog.get_logger("picometer.gateway")


class StandIns:
    def __init__(self, config: Config, pricer: Pricer, clock: Clock) -> None:
        self.config, self.pricer, self.clock = config, pricer, clock

    def of(self, asked: Admitted, targets: tuple[str, ...]) -> list[Admitted]:
        """The call as each target would take it, skipping those that cannot (logged) or have no price."""
        out = []
        for spec in targets:
            try:
                stand_in = substitute(asked, Target.parse(spec), self.config)
            except CannotSubstitute as e:
                log.info("no stand-in for this call", target=spec, reason=str(e))
                continue
            model = stand_in.facts.model
            if model and self.pricer.is_priced(stand_in.provider, model, self.clock.now()):
                out.append(stand_in)
        return out

    def worst(self, a: Admitted) -> int:
        """Picodollars: the most this call can cost, at its provider and model or at any of the provider's
        fallbacks (they may answer it instead)."""
        fallbacks = self.of(a, a.provider.fallback) if a.provider.fallback else []
        return max([self._worst_at(a), *(self._worst_at(f) for f in fallbacks)])

    def _worst_at(self, a: Admitted) -> int:
        model, shape, body = a.facts.model, a.endpoint.shape, a.body
        if not model or shape is None or body is None:
            return 0
        usage = worst_usage(body, shape, a.endpoint.name, model, self.pricer.context_window(a.provider, model))
        at = a.facts.started
        cost = self.pricer.worst_cost(a.provider, model, usage, at, shape=shape, request_tools=request_tools(body))
        return to_pico(cost or 0.0)
