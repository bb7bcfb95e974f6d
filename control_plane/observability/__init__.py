"""Metrics, traces and logs of the control plane: the edge-side instruments that read the cores."""
