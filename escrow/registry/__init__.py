"""Registries: bases pulled and pinned by digest, results pushed, envelopes attached as OCI
artifacts, through oras and the Docker SDK."""
