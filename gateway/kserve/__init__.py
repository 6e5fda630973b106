"""The Open Inference Protocol (KServe V2) at the gateway: `inference.GRPCInferenceService`,
translated into servemesh.v1 predictions that go through the one dispatcher."""
