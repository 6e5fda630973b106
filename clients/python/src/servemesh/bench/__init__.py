"""`servemesh bench`: a serving benchmark for servemesh targets and OpenAI-compatible servers."""
