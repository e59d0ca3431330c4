"""The benchmark of the tutorial "RAG with Milvus and LlamaIndex Async API", reproduced and extended.

The tutorial (milvus.io / LlamaIndex docs, "Explore the Async API") times four experiments
against LlamaIndex's `MilvusVectorStore`, at 10, 100 and 1000 calls each:

- async add:    `asyncio.gather` of N `async_add([node])` calls, one node per call;
- sync add:     N `add([node])` calls, one after another;
- async search: `asyncio.gather` of N `aquery(VectorStoreQuery(...))` calls;
- sync search:  N `query(...)` calls, one after another;

with dim 768, COSINE, Strong consistency, 16-digit random ids, text `n{i}_text`, embedding
`[0.5]*767 + [random]`, a SOURCE relationship to `n{i+1}`, and the query `[0.5]*767 + [0.6]`
with top-k 3. Each experiment starts from a fresh collection (`overwrite=True`); the three
sizes of an add experiment go into the same collection, one after another, and the searches
run over 1000 nodes added with one sync `add`, exactly as in the tutorial.

Here every experiment runs for LlamaIndex's `MilvusVectorStore` and for asyncrag's
`CoalescingMilvusVectorStore` in the same process, size by size (the official store first),
on a real Milvus 2.3.5 server started for the run (the PyPI `milvus` package) and on
Milvus Lite (in-process, a `.db` path, as the tutorial's users would run it).
Sync search at 1000 takes minutes by design (Strong consistency waits for the next time tick on
every request); `--quick` runs the sync experiments at 10 and 100 only.

Measured the way `timeit` measures: the garbage collector runs before every timed call, not
inside one (a full collection takes ~0.15 s here and would land in whichever store's turn it
happened to be), and the async experiments run `--repeat` times, stores taking turns, keeping
each store's best (a repeat is skipped once a store has spent `REPEAT_BUDGET_S` on that cell).

Next to the two stores, "one request" sends the same work as a single pymilvus request (the
n rows prebuilt, or one search with n query vectors): the floor for any client-side
coalescing, and so the best ratio this server allows. A store's "share" of it is one request's
time over the store's, the median of the runs (each floor runs right after asyncrag's run).
"one request + client" also times the work no drop-in store can skip, since each caller gets
LlamaIndex objects: building the rows from the nodes, or reading each query's hits into nodes.

It prints a table next to the tutorial's published numbers, writes the JSON, then a PNG chart
beside it (matplotlib; without it, a warning and no chart):

    python benchmarks/tutorial_async.py [--quick] [--backends server,lite] [--sizes 10,100,1000]
                                        [--repeat 7] [--out benchmarks/results/tutorial_async.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import VectorStoreQuery
from llama_index.vector_stores.milvus import MilvusVectorStore
from rich.console import Console
from rich.table import Table

from asyncrag.store.milvus import release_lite
from asyncrag.store.vector_store import CoalescingMilvusVectorStore
from asyncrag.testing import MilvusServer, MilvusServerError, milvus_package_available

logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

DIM = 768
TOP_K = 3
SIZES = (10, 100, 1000)
QUICK_SYNC_MAX = 100
CORPUS = 1000  # nodes added before the search experiments
EXPERIMENTS = ("async_add", "sync_add", "async_search", "sync_search")
LABELS = {
    "async_add": "async add",
    "sync_add": "sync add",
    "async_search": "async search",
    "sync_search": "sync search",
}
BACKENDS = ("server", "lite")
STORES: dict[str, type[MilvusVectorStore]] = {
    "MilvusVectorStore": MilvusVectorStore,
    "asyncrag": CoalescingMilvusVectorStore,
}
BASELINE, OURS = "MilvusVectorStore", "asyncrag"
ONE_REQUEST = "one request"
# The same request with the client work any drop-in store must do per call, timed: rows built from
# the nodes (add), the hits read into each caller's nodes (search).
WITH_CLIENT = "one request + client"
REPEAT = 7  # runs of each async experiment; a store's best counts, shares are the median
REPEAT_BUDGET_S = 10.0  # no more repeats once a store has spent this long on one cell

# The tutorial's published timings (seconds), on its own Milvus server.
TUTORIAL_SECONDS: dict[str, dict[int, float]] = {
    "async_add": {10: 0.19, 100: 0.48, 1000: 3.22},
    "sync_add": {10: 0.56, 100: 5.85, 1000: 62.91},
    "async_search": {10: 0.55, 100: 1.39, 1000: 8.81},
    "sync_search": {10: 3.29, 100: 30.80, 1000: 308.80},
}

# What asyncrag should reach, as MilvusVectorStore time / asyncrag time, at 1000 calls (issue 3).
TARGETS: dict[tuple[str, str], float] = {
    ("server", "async_add"): 10.0,
    ("lite", "async_add"): 10.0,
    ("server", "async_search"): 4.0,
    ("lite", "async_search"): 30.0,
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tutorial_async.json"

Progress = Callable[[str], None]


# -- the tutorial's code, as it defines it ----------------------------------------------------


def random_id() -> str:
    return "".join(str(random.randint(0, 9)) for _ in range(16))


def produce_nodes(num_adding: int) -> list[TextNode]:
    return [
        TextNode(
            id_=random_id(),
            text=f"n{i}_text",
            embedding=[0.5] * (DIM - 1) + [random.random()],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"n{i + 1}")},
        )
        for i in range(num_adding)
    ]


def tutorial_query() -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=[0.5] * (DIM - 1) + [0.6], similarity_top_k=TOP_K)


def init_vector_store(cls: type[MilvusVectorStore], uri: str, collection: str) -> MilvusVectorStore:
    return cls(
        uri=uri,
        dim=DIM,
        collection_name=collection,
        embedding_field="embedding",
        id_field="id",
        similarity_metric="COSINE",
        consistency_level="Strong",
        overwrite=True,  # a fresh collection for every experiment
    )


async def async_add(store: MilvusVectorStore, num_adding: int) -> float:
    node_list = produce_nodes(num_adding)
    start = time.perf_counter()
    await asyncio.gather(*(store.async_add([node]) for node in node_list))
    return time.perf_counter() - start


def sync_add(store: MilvusVectorStore, num_adding: int) -> float:
    node_list = produce_nodes(num_adding)
    start = time.perf_counter()
    for node in node_list:
        store.add([node])
    return time.perf_counter() - start


async def async_search(store: MilvusVectorStore, num_queries: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(store.aquery(query=tutorial_query()) for _ in range(num_queries)))
    return time.perf_counter() - start


def sync_search(store: MilvusVectorStore, num_queries: int) -> float:
    start = time.perf_counter()
    for _ in range(num_queries):
        store.query(query=tutorial_query())
    return time.perf_counter() - start


# -- the floor: the same work in one pymilvus request -----------------------------------------


def one_request_add(store: CoalescingMilvusVectorStore, num_adding: int, *, client: bool = False) -> float:
    """One insert of all the rows; with `client`, building the rows from the nodes is timed too."""
    nodes = produce_nodes(num_adding)

    def rows() -> list[dict[str, Any]]:
        return [store.row(node) for node in nodes]  # the rows both stores write

    prebuilt = None if client else rows()
    start = time.perf_counter()
    store.client.insert(store.collection_name, prebuilt if prebuilt is not None else rows())
    return time.perf_counter() - start


def one_request_search(store: CoalescingMilvusVectorStore, num_queries: int, *, client: bool = False) -> float:
    """One search with every query vector; with `client`, reading each query's hits into the
    LlamaIndex nodes a caller gets (the store's parse, the fastest there is here) is timed too."""
    vector = tutorial_query().query_embedding
    start = time.perf_counter()
    hits = store.client.search(
        store.collection_name,
        data=[vector] * num_queries,
        limit=TOP_K,
        output_fields=store.fields_to_fetch(("*",)),
        anns_field=store.embedding_field,
    )
    if client:
        for one in hits:
            store._parse_from_milvus_results([one])
    return time.perf_counter() - start


# -- running it for both stores ---------------------------------------------------------------


@dataclass
class Result:
    backend: str
    experiment: str
    n: int
    seconds: dict[str, float]

    @property
    def tutorial(self) -> float | None:
        return TUTORIAL_SECONDS[self.experiment].get(self.n)

    runs: dict[str, list[float]] = field(default_factory=dict)
    # Milvus requests asyncrag's store made in its best run, and rows or query vectors per request
    requests: int | None = None

    @property
    def mean_batch(self) -> float | None:
        return self.n / self.requests if self.requests else None

    @property
    def share(self) -> float | None:
        """How much of what one request allows asyncrag gets: its ratio over one request's, which
        is one request's time over asyncrag's; the median over the runs (each pair ran back to back)."""
        return self._share(ONE_REQUEST)

    @property
    def client_share(self) -> float | None:
        """The same against one request plus the client work every caller needs (rows, nodes)."""
        return self._share(WITH_CLIENT)

    def _share(self, floor: str) -> float | None:
        pairs = list(zip(self.runs.get(floor, []), self.runs.get(OURS, []), strict=False))
        return statistics.median(one / ours for one, ours in pairs) if pairs else None

    @property
    def ratio(self) -> float | None:
        """How many times faster asyncrag is than MilvusVectorStore (> 1: faster)."""
        return self._ratio(OURS)

    @property
    def best_ratio(self) -> float | None:
        """The ratio if asyncrag cost no more than one request carrying all the work."""
        return self._ratio(ONE_REQUEST)

    def _ratio(self, name: str) -> float | None:
        base, other = self.seconds.get(BASELINE), self.seconds.get(name)
        return base / other if base and other else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "experiment": self.experiment,
            "n": self.n,
            "tutorial": self.tutorial,
            **{name: self.seconds.get(name) for name in STORES},
            "ratio": self.ratio,
            ONE_REQUEST: self.seconds.get(ONE_REQUEST),
            "best_ratio": self.best_ratio,
            "share_of_ceiling": self.share,
            WITH_CLIENT: self.seconds.get(WITH_CLIENT),
            "share_of_client_ceiling": self.client_share,
            "requests": self.requests,
            "mean_batch": self.mean_batch,
            "runs": self.runs,
        }


@dataclass
class Report:
    sizes: list[int]
    sync_sizes: list[int]
    corpus: int
    quick: bool
    backends: list[str]
    repeat: int = REPEAT
    results: list[Result] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def note(self) -> str | None:
        dropped = [n for n in self.sizes if n not in self.sync_sizes]
        if not dropped:
            return None
        ran = "/".join(map(str, self.sync_sizes)) or "no size"
        return f"--quick: sync experiments ran at {ran} only (not at {'/'.join(map(str, dropped))})"

    def targets(self) -> list[dict[str, Any]]:
        out = []
        for r in self.results:
            target = TARGETS.get((r.backend, r.experiment))
            if target is not None and r.n == 1000 and r.ratio is not None:
                out.append(
                    {
                        "backend": r.backend,
                        "experiment": r.experiment,
                        "n": r.n,
                        "ratio": r.ratio,
                        "target": target,
                        "met": r.ratio >= target,
                        "best_ratio": r.best_ratio,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "tutorial_async",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": self.quick,
            "note": self.note,
            "config": {
                "dim": DIM,
                "top_k": TOP_K,
                "similarity_metric": "COSINE",
                "consistency_level": "Strong",
                "sizes": self.sizes,
                "sync_sizes": self.sync_sizes,
                "corpus": self.corpus,
                "repeat": self.repeat,
                "backends": self.backends,
                "stores": list(STORES),
            },
            "environment": _environment(),
            "tutorial": {exp: {str(n): s for n, s in by_n.items()} for exp, by_n in TUTORIAL_SECONDS.items()},
            "results": [r.to_dict() for r in self.results],
            "targets": self.targets(),
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
        }


def run_backend(
    backend: str,
    uri: str,
    *,
    sizes: Sequence[int],
    sync_sizes: Sequence[int],
    corpus: int,
    repeat: int = REPEAT,
    progress: Progress = lambda _: None,
) -> list[Result]:
    """All four experiments on one Milvus, for both stores; one event loop, as in the tutorial."""
    loop = asyncio.new_event_loop()
    results: list[Result] = []

    def measure(
        experiment: str,
        n: int,
        stores: dict[str, MilvusVectorStore],
        timed: Callable,
        floor: Callable[..., float] | None = None,
    ) -> None:
        runs: dict[str, list[float]] = {name: [] for name in stores}
        requests: list[int] = []  # asyncrag's, per run
        rounds = repeat if floor is not None else 1  # the async experiments
        for _ in range(rounds):
            ran_ours = False
            for name, store in stores.items():  # stores take turns, so drift favours none
                if runs[name] and sum(runs[name]) >= REPEAT_BUDGET_S:
                    continue
                gc.collect()
                sent.clear()
                outcome = timed(store, n)
                runs[name].append(loop.run_until_complete(outcome) if asyncio.iscoroutine(outcome) else outcome)
                if name == OURS:
                    requests.append(len(sent))
                    ran_ours = True
            if floor is not None and ran_ours:  # right after asyncrag's run: a share is a pair's ratio
                for label, client in ((ONE_REQUEST, False), (WITH_CLIENT, True)):
                    gc.collect()
                    runs.setdefault(label, []).append(floor(stores[OURS], n, client=client))
        best = min(range(len(runs[OURS])), key=runs[OURS].__getitem__)
        counted = requests[best] if floor is not None else None  # (the sync paths are the official store's)
        result = Result(backend, experiment, n, {name: min(r) for name, r in runs.items()}, runs, counted)
        results.append(result)
        progress(
            f"{backend:6} {LABELS[experiment]:12} n={n:<5} "
            + "  ".join(f"{name} {s:.3f} s" for name, s in result.seconds.items())
            + (f"  ×{result.ratio:.1f}" if result.ratio else "")
            + (f" (one request ×{result.best_ratio:.1f}, share {result.share:.2f})" if result.share else "")
            + (f" (+ client: share {result.client_share:.2f})" if result.client_share else "")
            + (f"  {result.requests} requests of {result.mean_batch:.0f}" if result.mean_batch else "")
        )

    sent: list[int] = []  # the rows or query vectors of each request asyncrag's store made in the run

    def fresh(experiment: str) -> dict[str, MilvusVectorStore]:
        stores = {
            name: init_vector_store(cls, uri, f"tutorial_{experiment}_{i}")
            for i, (name, cls) in enumerate(STORES.items())
        }
        stores[OURS].on_batch = lambda kind, rows: sent.append(rows)  # type: ignore[attr-defined]
        return stores

    try:
        stores = fresh("async_add")
        for n in sizes:
            measure("async_add", n, stores, async_add, one_request_add)
        _close(loop, stores)

        stores = fresh("sync_add")
        for n in sync_sizes:
            measure("sync_add", n, stores, sync_add)
        _close(loop, stores)

        stores = fresh("search")
        for store in stores.values():
            store.add(produce_nodes(corpus))
        for n in sizes:
            measure("async_search", n, stores, async_search, one_request_search)
        for n in sync_sizes:
            measure("sync_search", n, stores, sync_search)
        _close(loop, stores)
    finally:
        loop.close()
    return results


def _close(loop: asyncio.AbstractEventLoop, stores: dict[str, MilvusVectorStore]) -> None:
    """Drop the experiment's collections (the server's data dir stays small) and close clients."""
    for store in stores.values():
        with suppress(Exception):  # cleanup must not hide the numbers
            store.client.drop_collection(store.collection_name)
            if store.aclient is not None:
                loop.run_until_complete(store.aclient.close())
            store.client.close()


def run(
    *,
    backends: Sequence[str] = BACKENDS,
    sizes: Sequence[int] = SIZES,
    quick: bool = False,
    corpus: int = CORPUS,
    repeat: int = REPEAT,
    server_uri: str | None = None,
    progress: Progress = lambda _: None,
) -> Report:
    """Run the benchmark on each backend; a backend that cannot start is reported as skipped."""
    sizes = sorted(set(sizes))
    sync_sizes = [n for n in sizes if n <= QUICK_SYNC_MAX] if quick else list(sizes)
    report = Report(list(sizes), sync_sizes, corpus, quick, list(backends), repeat)
    started = time.perf_counter()
    for backend in backends:
        kwargs = {"sizes": sizes, "sync_sizes": sync_sizes, "corpus": corpus, "repeat": repeat, "progress": progress}
        if backend == "server":
            if server_uri:
                report.results += run_backend("server", server_uri, **kwargs)
                continue
            if not milvus_package_available():
                report.skipped["server"] = "the `milvus` package (Milvus 2.3.5 standalone) is not installed"
                progress(f"server skipped: {report.skipped['server']}")
                continue
            progress("starting Milvus 2.3.5 standalone on 127.0.0.1 (fresh data dir)…")
            try:
                server = MilvusServer().start()
            except MilvusServerError as e:
                report.skipped["server"] = f"could not start Milvus: {e}"
                progress(f"server skipped: {e}")
                continue
            try:
                progress(f"Milvus is up at {server.uri}")
                report.results += run_backend("server", server.uri, **kwargs)
            finally:
                server.stop()
        elif backend == "lite":
            with tempfile.TemporaryDirectory(prefix="asyncrag-lite-") as tmp:
                uri = str(Path(tmp) / "tutorial.db")
                try:
                    report.results += run_backend("lite", uri, **kwargs)
                finally:
                    release_lite(uri)
        else:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    report.seconds = time.perf_counter() - started
    return report


def _environment() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pymilvus": version("pymilvus"),
        "milvus-lite": version("milvus-lite"),
        "milvus (server)": version("milvus"),
        "llama-index-core": version("llama-index-core"),
        "llama-index-vector-stores-milvus": version("llama-index-vector-stores-milvus"),
    }


# -- output -----------------------------------------------------------------------------------


def print_table(report: Report, console: Console) -> None:
    table = Table(title="Tutorial benchmark: seconds (ratio = MilvusVectorStore / asyncrag)")
    for column in ("backend", "experiment", "n"):
        table.add_column(column)
    for column in ("tutorial", BASELINE, OURS, "ratio", ONE_REQUEST, "its ratio", "share", "+ client", "share",
                   "requests (mean)"):
        table.add_column(column, justify="right")
    order = {e: i for i, e in enumerate(EXPERIMENTS)}
    for r in sorted(report.results, key=lambda r: (report.backends.index(r.backend), order[r.experiment], r.n)):
        table.add_row(
            r.backend,
            LABELS[r.experiment],
            str(r.n),
            _fmt(r.tutorial),
            _fmt(r.seconds.get(BASELINE)),
            _fmt(r.seconds.get(OURS)),
            f"×{r.ratio:.1f}" if r.ratio else "-",
            _fmt(r.seconds.get(ONE_REQUEST)),
            f"×{r.best_ratio:.1f}" if r.best_ratio else "-",
            f"{r.share:.2f}" if r.share else "-",
            _fmt(r.seconds.get(WITH_CLIENT)),
            f"{r.client_share:.2f}" if r.client_share else "-",
            f"{r.requests} ({r.mean_batch:.0f})" if r.mean_batch else "-",
        )
    console.print(table)
    if report.note:
        console.print(f"[yellow]{report.note}[/yellow]")
    for backend, reason in report.skipped.items():
        console.print(f"[yellow]{backend} skipped:[/yellow] {reason}")
    for t in report.targets():
        mark = "[green]met[/green]" if t["met"] else "[red]missed[/red]"
        best = f"; one request ×{t['best_ratio']:.1f}" if t["best_ratio"] else ""
        console.print(
            f"target {t['backend']} {LABELS[t['experiment']]} ×{t['n']}: "
            f"×{t['ratio']:.1f} (≥ ×{t['target']:.0f}{best}) {mark}"
        )
    console.print(
        f"Async experiments: best of {report.repeat} runs; a share is the median of one request's time over"
        f" asyncrag's, run by run. '{ONE_REQUEST}': the same work as a single pymilvus request (the floor for any"
        " coalescing);\n'+ client': that request plus the work every caller needs (rows built from nodes, hits read"
        " into nodes).\nThe tutorial's numbers come from its own machine and Milvus server;"
        " compare ratios within one run."
    )


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}" if seconds >= 0.1 else f"{seconds:.3f}"


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def draw_chart(report: Report, path: Path) -> Path:
    """One panel per backend: log-scale seconds per experiment × n, one bar per store (+ the tutorial's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in report.backends if any(r.backend == b for r in report.results)] or report.backends
    fig, axes = plt.subplots(len(backends), 1, figsize=(12, 4.2 * len(backends)), squeeze=False)
    series = [("tutorial (published)", None, "#bbbbbb"), (BASELINE, BASELINE, "#d62728"), (OURS, OURS, "#1f77b4")]
    width = 0.27
    for ax, backend in zip(axes[:, 0], backends, strict=True):
        rows = [
            r
            for e in EXPERIMENTS
            for r in sorted(report.results, key=lambda r: r.n)
            if r.backend == backend and r.experiment == e
        ]
        x = range(len(rows))
        for k, (label, store, color) in enumerate(series):
            values = [(r.tutorial if store is None else r.seconds.get(store)) or 0 for r in rows]
            ax.bar([i + (k - 1) * width for i in x], values, width, label=label, color=color)
        for i, r in enumerate(rows):
            if r.ratio:
                top = max(v for v in (r.tutorial, *r.seconds.values()) if v)
                ax.annotate(
                    f"×{r.ratio:.1f}", (i, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8
                )
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"{LABELS[r.experiment]}\n{r.n}" for r in rows], fontsize=8)
        ax.set_ylabel("seconds (log)")
        title = "real Milvus 2.3.5 server" if backend == "server" else "Milvus Lite (in-process)"
        ax.set_title(f"{title}: MilvusVectorStore vs asyncrag (ratio above the bars)")
        ax.legend(fontsize=8)
        if not rows:
            ax.text(0.5, 0.5, report.skipped.get(backend, "no results"), transform=ax.transAxes, ha="center")
    if report.note:
        fig.text(0.01, 0.005, report.note, fontsize=8, color="#aa6600")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save(report: Report, out: Path, console: Console) -> None:
    """The JSON first, then the chart: a chart that cannot be drawn (no matplotlib) never loses a run."""
    write_json(report, out)
    console.print(f"wrote {out}")
    try:
        console.print(f"wrote {draw_chart(report, out.with_suffix('.png'))}")
    except Exception as e:  # noqa: BLE001 - the numbers are in the JSON; the chart is a convenience
        print(f"warning: no chart drawn ({e!r}); {out} is complete", file=sys.stderr)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _backends(text: str) -> list[str]:
    """Checked before anything runs, so a typo never costs the backends before it."""
    names = _csv(text)
    if not names or set(names) - set(BACKENDS):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(BACKENDS)}")
    return names


def _sizes(text: str) -> list[int]:
    try:
        sizes = [_positive(s) for s in _csv(text)]
    except argparse.ArgumentTypeError:
        sizes = []
    if not sizes:
        raise argparse.ArgumentTypeError(f"{text!r}: positive call counts, e.g. 10,100,1000")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive whole number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="sync experiments at 10/100 only (sync search at 1000 takes minutes)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path; the PNG chart goes next to it")
    parser.add_argument("--backends", type=_backends, default=",".join(BACKENDS), help="comma-separated: server,lite")
    parser.add_argument("--sizes", type=_sizes, default=",".join(map(str, SIZES)), help="comma-separated call counts")
    parser.add_argument("--corpus", type=_positive, default=CORPUS, help="nodes added before the search experiments")
    parser.add_argument("--repeat", type=_positive, default=REPEAT, help="runs of each async experiment (7)")
    parser.add_argument("--server-uri", default=None, help="use this Milvus server instead of starting one")
    args = parser.parse_args(argv)
    report = run(
        backends=args.backends,
        sizes=args.sizes,
        quick=args.quick,
        corpus=args.corpus,
        repeat=args.repeat,
        server_uri=args.server_uri,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    console = Console() if sys.stdout.isatty() else Console(width=120)  # a log keeps the full table
    print_table(report, console)
    save(report, args.out, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
