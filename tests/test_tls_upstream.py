"""A provider over HTTPS, as every real one is: the pool's connections (gateway.pool) wrap the TLS stream too, so
calls and streams are metered and a call's waiting work is done once its request is out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from picometer.gateway.fingerprint import Fingerprint
from picometer.gateway.upstream import Upstream
from picometer.simulator import Simulator
from tests.servers import AppServer, GatewayServer, gateway_config

CHAT = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hello over TLS."}]}


class TLSSimServer(AppServer):
    """The simulated provider behind a certificate of a test CA."""

    def __init__(self, cert: Path, key: Path) -> None:
        app = Simulator()
        super().__init__(app)
        self.url = f"https://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, ssl_certfile=str(cert), ssl_keyfile=str(key))
        config.log_level, config.lifespan = "critical", "off"
        self.server = uvicorn.Server(config)


@pytest.fixture
def tls_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TLSSimServer]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, trusted = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(trusted))
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))  # the pool trusts the test CA, as it would a real one
    with TLSSimServer(cert, key) as server:
        yield server


def test_calls_and_streams_to_an_https_provider_are_metered(
    tls_sim: TLSSimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    take, attempt = Fingerprint.take, Upstream._attempt

    def taking(self: Fingerprint) -> Fingerprint:
        if self._parts is not None:
            steps.append("taken")
        return take(self)

    async def attempting(self: Upstream, *args: Any) -> Any:
        result = await attempt(self, *args)
        steps.append("answered")
        return result

    monkeypatch.setattr(Fingerprint, "take", taking)
    monkeypatch.setattr(Upstream, "_attempt", attempting)
    config = gateway_config(tls_sim.url, tmp_path)
    with GatewayServer(config) as gw, httpx.Client(trust_env=False, timeout=30) as client:
        url = f"{gw.url}/openai/chat/completions"
        assert client.post(url, json=CHAT).status_code == 200
        with client.stream("POST", url, json={**CHAT, "stream": True}) as r:
            body = b"".join(r.iter_bytes())
        assert r.status_code == 200 and body.rstrip().endswith(b"data: [DONE]")
        records = gw.records(2)
    assert steps == ["taken", "answered"] * 2, "the waiting work is done over TLS too, before the answer"
    for rec in records:
        assert (rec["status"], rec["usage_source"], rec["http_status"]) == ("ok", "provider", 200)
        assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0 and rec["cost_usd"] > 0
