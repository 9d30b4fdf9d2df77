"""PNG encoding for the output writers: fast zlib settings, many images encoded in parallel.

zlib level 1 instead of Pillow's default 6: on a recovery's 1024² texture it encodes ≈ 3× faster for
≈ 20 % more bytes (bench/bench_pipeline.py prints both). Pillow releases the GIL while it compresses,
so :func:`encode_pngs` spreads the images of one output folder over a few threads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .images import to_uint8

PNG_COMPRESS_LEVEL = 1  # zlib level: 1 = fastest compression (0 would store raw)
MAX_THREADS = 4


def encode_png(rgb: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of a float [0, 1] (NaN → 0) or uint8 RGB(A) image."""
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        array = to_uint8(array)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_pngs(images: Mapping[str, np.ndarray], compress_level: int = PNG_COMPRESS_LEVEL,
                threads: int | None = None) -> dict[str, bytes]:
    """Encode every image of ``images`` ({name: RGB array}); the same array object is encoded once.

    Args:
        threads: worker threads (default: min(MAX_THREADS, CPU count, number of distinct images)).

    Returns:
        {name: PNG bytes} in the order of ``images``.
    """
    distinct: dict[int, np.ndarray] = {}
    for image in images.values():
        distinct.setdefault(id(image), image)
    workers = threads or max(1, min(MAX_THREADS, os.cpu_count() or 1, len(distinct)))
    if workers == 1:
        encoded = {key: encode_png(image, compress_level) for key, image in distinct.items()}
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="png") as pool:
            # biggest first, so the last one to finish is small
            order = sorted(distinct, key=lambda key: -np.asarray(distinct[key]).size)
            futures = {key: pool.submit(encode_png, distinct[key], compress_level) for key in order}
            encoded = {key: future.result() for key, future in futures.items()}
    return {name: encoded[id(image)] for name, image in images.items()}
