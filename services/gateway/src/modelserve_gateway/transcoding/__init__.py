"""REST to gRPC transcoding compiled from ``google.api.http`` options (grpc-gateway semantics)."""
