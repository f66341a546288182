"""BYTES in, BYTES out: upper-cases UTF-8 text (a plain, synchronous predict runs in a worker thread)."""

import numpy as np


class Model:
    def load(self) -> None:
        self.encoding = self.parameters.get("encoding", "utf-8")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [b.decode(self.encoding) for b in inputs["text"].reshape(-1)]
        upper = np.array([t.upper().encode(self.encoding) for t in texts], dtype=object)
        length = np.array([len(t) for t in texts], dtype=np.int32)
        shape = inputs["text"].shape
        return {"upper": upper.reshape(shape), "length": length.reshape(shape)}
