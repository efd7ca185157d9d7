"""The control plane: run-time entities kept in the store, mirrored in memory per process."""

from gateway.control.plane import ControlPlane, Snapshot

__all__ = ["ControlPlane", "Snapshot"]
