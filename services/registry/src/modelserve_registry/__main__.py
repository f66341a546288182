"""python -m modelserve_registry: the registry process."""

import asyncio

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings


def main() -> None:
    settings = load_settings(RegistrySettings, prog="python -m modelserve_registry")
    configure_logging(settings)
    asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))


if __name__ == "__main__":
    main()
