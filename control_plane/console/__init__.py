"""The operations console: server-rendered pages over the cores, live over Server-Sent Events."""

from control_plane.console.access import Access
from control_plane.console.app import Console
from control_plane.console.views import Cores

__all__ = ["Access", "Console", "Cores"]
