"""python -m modelserve_model_server: the model_server process."""

import asyncio

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings


def main() -> None:
    settings = load_settings(ModelServerSettings, prog="python -m modelserve_model_server")
    configure_logging(settings)
    asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))


if __name__ == "__main__":
    main()
