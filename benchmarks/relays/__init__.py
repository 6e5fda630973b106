"""Baselines of benchmarks/proxy_overhead.py: servers that are not the mesh, run as processes."""
