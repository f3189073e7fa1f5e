"""kiln's benchmark suite: the same Dockerfiles built and pushed by kiln and by buildah, side by side.

Run from the repository root:  .venv/bin/python -m bench   (see bench/README.md).
"""
