"""The operator image as ``make image`` builds it, run as ``manifests/base`` runs it.

In: the image (``operator_image`` of tests/dockerfixtures.py: the same code path as ``make
image``), the base Deployment as ``kubectl kustomize`` renders it, and the Go-built control plane.
Out: the build context is what .dockerignore admits; the image starts, runs as UID 65532 on a
read-only root with no capabilities, and does cattle's lifecycle against the API server.
"""
