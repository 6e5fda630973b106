"""Test photographs for the image labs: the colour pictures scikit-image ships, as JPEG bytes."""

from __future__ import annotations

import io

from PIL import Image
from skimage import data

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # shipped in the package, no download


def jpeg(array: object, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buffer, format="JPEG", quality=quality)  # type: ignore[arg-type]
    return buffer.getvalue()


def photos(n: int) -> list[bytes]:
    """`n` JPEG images, the shipped photos and their mirror images in turn."""
    base = [getattr(data, name)() for name in PHOTOS]
    variants = base + [a[:, ::-1] for a in base]
    return [jpeg(variants[i % len(variants)]) for i in range(n)]
