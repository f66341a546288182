"""python -m modelserve_registry [migrate]: the registry process, or (with `migrate`) apply the
database migrations under the migration lock and exit (the deployment's migration Job)."""

import asyncio
import sys

import structlog

from modelserve_common.config import load_settings
from modelserve_common.errors import ServiceError
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_registry.malloc import fix_mmap_threshold, limit_arenas
from modelserve_registry.server import migrate_only, running_server
from modelserve_registry.settings import RegistrySettings


def main() -> None:
    argv = sys.argv[1:]
    command = argv.pop(0) if argv and argv[0] == "migrate" else "serve"
    settings = load_settings(RegistrySettings, argv, prog="python -m modelserve_registry [migrate]")
    configure_logging(settings)
    log = structlog.get_logger("modelserve_registry")
    if command == "migrate":
        try:
            version = asyncio.run(migrate_only(settings))
        except ServiceError as exc:  # database unreachable, or a schema newer than this code
            log.error("registry.migration_failed", code=exc.code.name, error=exc.message)
            raise SystemExit(1) from None
        log.info("registry.migrated", schema_version=version)
        return
    fix_mmap_threshold(settings.malloc_mmap_threshold_bytes)
    limit_arenas(settings.malloc_arena_max)
    asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))


if __name__ == "__main__":
    main()
