"""Test helpers shared by every kiln test: registries, base images, buildah, image inspection.

Everything here is independent of kiln: images are made and read with umoci, skopeo, tar and buildah, so a
test that compares kiln's output against these helpers compares against another implementation.
"""
