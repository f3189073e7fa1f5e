"""Build contexts: opening one (directory, tarball, stdin), .dockerignore matching, resolving COPY sources."""

from kiln.context.dockerignore import DockerIgnore
from kiln.context.opener import BuildContext, open_context
from kiln.context.sources import ResolvedSource, iter_tree, resolve_sources

__all__ = ["BuildContext", "DockerIgnore", "ResolvedSource", "iter_tree", "open_context", "resolve_sources"]
