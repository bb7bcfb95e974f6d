"""The mesh's xDS edge: the registry and the route policies as Envoy's resources, served over ADS, with CSDS."""
