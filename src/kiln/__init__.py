"""kiln: build container images from Dockerfiles without a Docker daemon."""

__version__ = "0.1.0"
