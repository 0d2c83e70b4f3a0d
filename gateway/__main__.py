"""`python -m gateway`: run the edge gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from gateway.app import start_gateway
from gateway.settings import GatewaySettings
from kit.logs import configure_logging, get_logger
from kit.tracing import configure_tracing

log = get_logger(__name__)


async def _serve(settings: GatewaySettings) -> None:
    running = await start_gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", grace_s=settings.shutdown_grace_s)
    await running.stop()


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    configure_tracing(
        "gateway",
        settings.trace_exporter,
        otlp_endpoint=settings.otlp_endpoint,
        sample_ratio=settings.trace_sample_ratio,
    )
    # uvloop is a pinned dependency (see kit.server.run_app).
    uvloop.run(_serve(settings))


if __name__ == "__main__":
    main()
