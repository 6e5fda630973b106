"""The servemesh gateway: one servemesh.v1 front door that routes calls by model name."""
