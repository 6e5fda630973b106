"""The TorchServe side of the mesh: handlers, model archives, configuration and launcher."""
