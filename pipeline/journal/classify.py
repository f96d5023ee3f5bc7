"""Clips classified on a bounded pool: never more inferences at once than workers, never more waiting than the queue.

A request takes a slot before its upload is even read, so a full server answers 503 at once instead
of buffering clips it cannot get to. Each worker thread runs ``predict_file`` (the one serving path:
the model's own sampling, cropping and normalisation) and keeps its own MediaPipe graph, as
``stacks.faces`` makes one per thread.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from models.served import ServingModel
from pipeline.serve.predict import PredictError, Prediction, predict_file


class Busy(Exception):
    """Every worker is busy and the queue is full; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy classifying other clips; try again in {retry_after} s")
        self.retry_after = retry_after


class ClipClassifier:
    """``workers`` threads, ``workers + queue`` slots."""

    def __init__(self, model: ServingModel, workers: int = 0, queue: int = 16, min_seconds: float = 2.0,
                 max_seconds: float | None = None) -> None:
        self.model = model
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.workers = workers or os.cpu_count() or 1
        self.capacity = self.workers + queue
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="classify")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._held = 0
        self._lock = threading.Lock()
        self._seconds = 1.0  # running mean of one classification, for Retry-After

    def reserve(self) -> None:
        """Take a slot, or raise ``Busy``; every successful call must be paired with ``release``."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                waiting = max(self._held - self.workers, 0) + 1
            raise Busy(max(1, math.ceil(waiting * self._seconds / self.workers)))
        with self._lock:
            self._held += 1

    def release(self) -> None:
        with self._lock:
            self._held -= 1
        self._slots.release()

    def _timed(self, path: Path) -> Prediction:
        start = time.perf_counter()
        try:
            return predict_file(path, self.model, min_seconds=self.min_seconds, max_seconds=self.max_seconds)
        finally:
            with self._lock:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

    async def classify(self, path: Path) -> Prediction:
        """Classify a clip on the pool (the caller holds a slot); ``PredictError`` says why one cannot be."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._timed, path)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Busy", "ClipClassifier", "PredictError"]
