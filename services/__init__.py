"""The building-permit services that join the control plane through the SDK."""
