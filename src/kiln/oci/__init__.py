"""Pure data of OCI and Docker images: digests, media types, descriptors, manifests, indexes, configs."""
