"""The domain: registry, bus and workflow cores. Plain Python; never imports gRPC."""
