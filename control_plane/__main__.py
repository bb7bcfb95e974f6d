"""`python -m control_plane` runs the `mgmt` command."""

from control_plane.cli import main

main()
