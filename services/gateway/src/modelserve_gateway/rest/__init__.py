"""The REST front door (an ASGI app, no framework): ``asgi`` (request lifecycle: request id, CORS,
public routes, shedding, body, disconnects, access log), ``http`` (the request, responses,
deadlines, the upstream call), ``transcoded`` (google.api.http routes), ``streaming`` (NDJSON/SSE)
and ``kserve`` (the KServe v2 route table and its requests and responses)."""
