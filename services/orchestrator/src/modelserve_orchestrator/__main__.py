"""python -m modelserve_orchestrator: the orchestrator process."""

import asyncio

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_orchestrator.server import running_server
from modelserve_orchestrator.settings import OrchestratorSettings


def main() -> None:
    settings = load_settings(OrchestratorSettings, prog="python -m modelserve_orchestrator")
    configure_logging(settings)
    asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))


if __name__ == "__main__":
    main()
