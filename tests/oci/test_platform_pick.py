"""One platform picker for every index kiln reads (registries, layouts, the base-image cache): expected choices
follow containerd's platform rules (arm64 means v8, arm means v7; an exact variant before a compatible one;
attestation manifests never chosen)."""

from __future__ import annotations

from kiln.oci.descriptor import Descriptor, pick_platform, platforms_offered
from kiln.oci.platform import Platform

_M = "application/vnd.oci.image.manifest.v1+json"


def _d(n: int, platform: Platform | None, **annotations: str) -> Descriptor:
    return Descriptor(_M, "sha256:" + f"{n:x}" * 64, 100, platform=platform, annotations=annotations)


def test_arm64_v8_is_arm64_and_exact_variant_wins() -> None:
    entries = [_d(1, Platform("linux", "amd64")), _d(2, Platform("linux", "arm", "v6")),
               _d(3, Platform("linux", "arm64", "v8")), _d(4, Platform("linux", "arm", "v7"))]
    assert pick_platform(entries, Platform.parse("linux/arm64")) is entries[2]
    assert pick_platform(entries, Platform("linux", "arm", None)) is entries[3]  # arm alone means v7
    assert pick_platform(entries, Platform.parse("linux/arm/v6")) is entries[1]
    assert pick_platform(entries, Platform.parse("linux/s390x")) is None


def test_attestations_are_never_chosen_and_a_lone_unlabelled_image_is() -> None:
    attestation = _d(5, Platform("unknown", "unknown"), **{"vnd.docker.reference.type": "attestation-manifest"})
    lone = _d(6, None)
    assert pick_platform([lone, attestation], Platform.parse("linux/amd64")) is lone
    assert pick_platform([attestation], Platform.parse("linux/amd64")) is None
    assert platforms_offered([attestation, _d(7, Platform("linux", "amd64"))]) == "linux/amd64"
