"""What the labs' notebooks share: recording figures, checks, plots, and side servers."""

from labkit.lab import Lab, LabCheckFailed

__all__ = ["Lab", "LabCheckFailed"]
