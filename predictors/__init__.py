"""Model servers that implement servemesh.v1.PredictionService."""
