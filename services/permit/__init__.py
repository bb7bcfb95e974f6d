"""The building-permit platform: document, payment, inspection and notification services, and the demo."""
