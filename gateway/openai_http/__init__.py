"""The gateway's OpenAI-compatible HTTP front door: /v1/models, /v1/chat/completions,
/v1/completions and /v1/embeddings, translated onto the dispatcher that serves servemesh.v1."""
