"""The llama predictor: GGUF models on llama.cpp, served over servemesh.v1."""
