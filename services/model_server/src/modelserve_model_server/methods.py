"""Full method names of inference.GRPCInferenceService, as the handler wrappers (the Triton router,
the ownership guard) and the Triton replica pool see them."""

from __future__ import annotations

SERVICE = "/inference.GRPCInferenceService/"
MODEL_INFER = SERVICE + "ModelInfer"
MODEL_STREAM_INFER = SERVICE + "ModelStreamInfer"
SERVER_READY = SERVICE + "ServerReady"
MODEL_READY = SERVICE + "ModelReady"
MODEL_METADATA = SERVICE + "ModelMetadata"
MODEL_CONFIG = SERVICE + "ModelConfig"
MODEL_STATISTICS = SERVICE + "ModelStatistics"
REPOSITORY_INDEX = SERVICE + "RepositoryIndex"
REPOSITORY_MODEL_LOAD = SERVICE + "RepositoryModelLoad"
REPOSITORY_MODEL_UNLOAD = SERVICE + "RepositoryModelUnload"
