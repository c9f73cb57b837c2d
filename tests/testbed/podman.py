# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Thin wrappers around the podman command line."""

import json

from .common import TestbedError, run

CLUSTER_LABEL = "kubeforge.testbed.cluster"
SUITE_LABEL = "kubeforge.testbed.suite"
RECIPE_LABEL = "kubeforge.testbed.recipe"
NETWORK = "podman"


def podman(*args, **kwargs):
    return run(["podman", *args], **kwargs)


def image_labels(image):
    """Labels of a local image, or None when the image does not exist."""
    proc = podman("image", "inspect", image, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    if not data:
        return None
    return data[0].get("Labels") or data[0].get("Config", {}).get("Labels") or {}


def image_id(image):
    proc = podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def testbed_containers(cluster=None):
    """Containers carrying the test bed label (of one cluster, or all), as podman's JSON records."""
    selector = f"{CLUSTER_LABEL}={cluster}" if cluster else CLUSTER_LABEL
    proc = podman("ps", "-a", "--filter", f"label={selector}", "--format", "json")
    return json.loads(proc.stdout or "[]") or []


def container_name(record):
    names = record.get("Names") or []
    return names[0] if isinstance(names, list) and names else str(names)


def inspect_containers(names):
    if not names:
        return {}
    proc = podman("container", "inspect", *names)
    return {item["Name"].lstrip("/"): item for item in json.loads(proc.stdout or "[]")}


def container_address(info):
    """The container's address on the podman network."""
    settings = info.get("NetworkSettings") or {}
    networks = settings.get("Networks") or {}
    preferred = networks.get(NETWORK) or {}
    if preferred.get("IPAddress"):
        return preferred["IPAddress"]
    for network in networks.values():
        if network.get("IPAddress"):
            return network["IPAddress"]
    return settings.get("IPAddress") or ""


def network_subnet(network=NETWORK):
    """(subnet, gateway) of a podman network, as ipaddress objects."""
    import ipaddress

    proc = podman("network", "inspect", network, check=False)
    if proc.returncode != 0:
        raise TestbedError(f"podman network {network!r} not found: {proc.stderr.strip()}")
    for item in json.loads(proc.stdout or "[]"):
        for subnet in item.get("subnets") or []:
            if subnet.get("subnet") and ":" not in subnet["subnet"]:
                return ipaddress.ip_network(subnet["subnet"]), ipaddress.ip_address(subnet.get("gateway") or "0.0.0.0")
    raise TestbedError(f"podman network {network!r} has no IPv4 subnet")


def network_gateway(network=NETWORK):
    """Gateway address of a podman network: the host as the nodes see it."""
    proc = podman("network", "inspect", network, check=False)
    if proc.returncode != 0:
        raise TestbedError(f"podman network {network!r} not found: {proc.stderr.strip()}")
    data = json.loads(proc.stdout or "[]")
    for item in data:
        for subnet in item.get("subnets") or []:
            if subnet.get("gateway"):
                return subnet["gateway"]
    raise TestbedError(f"podman network {network!r} has no gateway")
