"""Media types of OCI and Docker schema 2 images."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

_LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN: "gzip",
}


def layer_compression(media_type: str) -> str:
    """'none', 'gzip' or 'zstd' for a layer media type; unknown types are sniffed by the reader."""
    return _LAYER_COMPRESSION.get(media_type, "unknown")


def layer_media_type(compression: str, docker: bool) -> str:
    """The layer media type for a compression in the OCI or the Docker schema 2 family."""
    if docker:
        if compression != "gzip":
            # Docker schema 2 has no media type for uncompressed or zstd layers that clients accept.
            raise ValueError(f"Docker schema 2 images need gzip layers, not {compression}")
        return DOCKER_LAYER_GZIP
    return {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


def config_media_type(docker: bool) -> str:
    return DOCKER_CONFIG if docker else OCI_CONFIG


def index_media_type(docker: bool) -> str:
    return DOCKER_MANIFEST_LIST if docker else OCI_INDEX


def manifest_media_type(docker: bool) -> str:
    return DOCKER_MANIFEST if docker else OCI_MANIFEST


def is_docker_family(media_type: str) -> bool:
    return media_type.startswith("application/vnd.docker.")
