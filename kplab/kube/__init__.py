"""Kubernetes in the lab: objects, manifests, the cluster model, kube-proxy's rules.

Standard library plus PyYAML (imported only when YAML is read).
"""
