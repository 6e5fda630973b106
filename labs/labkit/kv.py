"""The KV cache's size per token of context, from a GGUF file's metadata."""

from __future__ import annotations

from dataclasses import dataclass

F16_BYTES = 2  # llama.cpp's default KV cache type, which the llama predictor keeps


@dataclass(frozen=True)
class KvShape:
    """What one token of context stores: a key and a value vector per KV head per layer."""

    layers: int
    heads: int
    kv_heads: int
    key_dim: int
    value_dim: int
    bytes_per_element: int = F16_BYTES

    @property
    def bytes_per_token(self) -> int:
        return (
            self.layers * self.kv_heads * (self.key_dim + self.value_dim) * self.bytes_per_element
        )

    @property
    def grouped_query_factor(self) -> int:
        """Query heads per KV head: how much grouped-query attention shrinks the cache."""
        return self.heads // self.kv_heads


def kv_shape(metadata: dict[str, str]) -> KvShape:
    """The KV shape from GGUF metadata keys (`llama.block_count`, ...), whatever the
    architecture's prefix; key and value lengths default to the head size, as in llama.cpp."""
    arch = metadata["general.architecture"]

    def get(key: str, default: int | None = None) -> int:
        value = metadata.get(f"{arch}.{key}")
        if value is None:
            if default is None:
                raise KeyError(f"the GGUF metadata has no {arch}.{key}")
            return default
        return int(value)

    heads = get("attention.head_count")
    head_dim = get("embedding_length") // heads
    return KvShape(
        layers=get("block_count"),
        heads=heads,
        kv_heads=get("attention.head_count_kv", heads),
        key_dim=get("attention.key_length", head_dim),
        value_dim=get("attention.value_length", head_dim),
    )


def gguf_metadata(path: str) -> dict[str, str]:
    """The GGUF file's metadata, read by llama.cpp without loading the weights' tensors."""
    import llama_cpp

    return dict(llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False).metadata)
