"""Kubernetes API access for Groups, shared by the operator and the CLI's cluster mode.

Thin, blocking wrappers over the official ``kubernetes`` client (callers in asyncio run
them in threads): read and list Groups, server-side apply a Group, patch status through
the ``/status`` subresource, edit finalizers with optimistic concurrency, post Events.
Nothing here decides anything.

Every write names its field manager, as kubectl's do: ``infrakit-cli`` for the CLI,
``infrakit-operator`` for the operator (``managedFields`` say who owns what, and a
GitOps tool's next apply sees our fields as ours).  The client's User-Agent says the
same, for the API server's audit log and any write that could not name one.
Server-side apply takes no field from another manager unless asked
(``force_conflicts``, kubectl's ``--force-conflicts``).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import Any, Final

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException

__all__ = [
    "FINALIZER",
    "GROUP",
    "OPERATOR_FIELD_MANAGER",
    "ORPHAN_ANNOTATION",
    "PLURAL",
    "VERSION",
    "ApiException",
    "ApplyConflict",
    "ConfigException",
    "Groups",
    "cluster_identity",
    "connect",
    "error_text",
    "kubeconfig",
]

GROUP: Final = "infrakit.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "groups"
FINALIZER: Final = "infrakit.io/instances"
ORPHAN_ANNOTATION: Final = "infrakit.io/orphan-instances"
FIELD_MANAGER: Final = "infrakit-cli"
OPERATOR_FIELD_MANAGER: Final = "infrakit-operator"


def cluster_identity(api: kubernetes.client.ApiClient, *, source: str = "kube-system") -> str:
    """The cluster's identity, from ``source``:

    * ``kube-system``: the UID of the cluster's ``kube-system`` namespace, as Cluster API
      and most multi-cluster tools take it (made once with the cluster, never reused);
      needs ``get`` on that one namespace;
    * ``service-account``: the UID of the service account the client authenticates as
      (a SelfSubjectReview, which every authenticated user may make): for an operator
      with no cluster-wide permission; it changes if that account is deleted and made anew.

    Raises :class:`ApiException` (403 where the caller may not read kube-system; 404 when
    the client is no service account).
    """
    if source == "service-account":
        review = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            kubernetes.client.V1SelfSubjectReview()
        )
        user = review.status.user_info if review.status is not None else None
        uid = user.uid if user is not None else None
        name = user.username if user is not None else ""
        if not uid or not str(name).startswith("system:serviceaccount:"):
            raise ApiException(status=404, reason=f"{name or 'this client'} is not a service account")
        return str(uid)
    namespace = kubernetes.client.CoreV1Api(api).read_namespace("kube-system")
    uid = namespace.metadata.uid if namespace.metadata is not None else None
    if not uid:
        raise ApiException(status=404, reason="the kube-system namespace has no UID")
    return str(uid)


class ApplyConflict(Exception):
    """A server-side apply would take fields another manager owns: the API server's message."""


def kubeconfig() -> str:
    """``$KUBECONFIG`` as it is now (the client reads it once, at import), else kubectl's default."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def connect(*, context: str | None = None, agent: str = FIELD_MANAGER) -> kubernetes.client.ApiClient:
    """An API client: in-cluster service account, else the kubeconfig (``$KUBECONFIG``).

    ``agent`` is the User-Agent's product (``infrakit-cli/0.1.0``), so the API server
    names us, not ``OpenAPI-Generator``, in audit logs and default field managers.
    """
    configuration = kubernetes.client.Configuration()
    if context is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return _client(configuration, agent)
        except kubernetes.config.ConfigException:
            pass
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig(), context=context, client_configuration=configuration
    )
    return _client(configuration, agent)


def _client(configuration: kubernetes.client.Configuration, agent: str) -> kubernetes.client.ApiClient:
    from infrakit import __version__

    api = kubernetes.client.ApiClient(configuration)
    api.user_agent = f"{agent}/{__version__}"
    return api


class Groups:
    """Group objects through one API client."""

    def __init__(self, api: kubernetes.client.ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager  # how our writes show up in managedFields
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    def items(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            listing: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def apply(self, manifest: Mapping[str, Any], *, namespace: str, force_conflicts: bool = False) -> None:
        """Server-side apply, as ``kubectl apply --server-side [--force-conflicts]`` does.

        Raises :class:`ApplyConflict` when another manager owns a field we set, unless
        ``force_conflicts`` (then the fields become ours).
        """
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                manifest["metadata"]["name"],
                dict(manifest),
                field_manager=self.field_manager,
                force=force_conflicts,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as error:
            if error.status == 409:
                raise ApplyConflict(error_text(error)) from None
            raise

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._merge(namespace, name, patch)

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge ``status`` into the object's status; False if the object is gone.

        The answer (the whole object) is not decoded: nothing reads it, and decoding it is
        a good part of what a status write costs the operator at a thousand Groups.
        """
        try:
            answer: Any = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                field_manager=self.field_manager,
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
            answer.drain_conn()  # read and dropped undecoded: the connection goes back to the pool
            answer.release_conn()
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
    ) -> dict[str, Any] | None:
        """Replace the finalizer list, failing with 409 if the object changed meanwhile.

        The object as patched; None if it is gone (nothing left to hold or release).
        """
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        return self._merge_unless_gone(namespace, name, patch)

    def _merge(self, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str = "") -> dict[str, Any]:
        """A JSON merge patch of the object (or of its ``status`` subresource), as our field manager."""
        call = (
            self.custom.patch_namespaced_custom_object_status
            if subresource == "status"
            else self.custom.patch_namespaced_custom_object
        )
        patched: Any = call(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(patch),
            field_manager=self.field_manager,
            _content_type="application/merge-patch+json",
        )
        return dict(patched)

    def _merge_unless_gone(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str = ""
    ) -> dict[str, Any] | None:
        try:
            return self._merge(namespace, name, patch, subresource=subresource)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def post_event(
        self, body: Mapping[str, Any], *, reason: str, message: str, warning: bool = False, component: str
    ) -> None:
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Group",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # Not decoded into the client's V1Event model: nothing reads the answer.
        answer: Any = self.core.create_namespaced_event(
            meta["namespace"], event, field_manager=self.field_manager, _preload_content=False
        )
        answer.drain_conn()
        answer.release_conn()


def error_text(error: ApiException) -> str:
    """The API server's message from an error, for logs and conditions."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)
