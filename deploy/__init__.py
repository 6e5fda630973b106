"""What runs the mesh: the local process manager and the mesh configuration."""
