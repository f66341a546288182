"""What every ModelServe service shares: settings, logging, tracing, metrics, errors, health,
server lifecycle, channels and the one interceptor chain. No domain logic lives here."""

__version__ = "0.1.0"
