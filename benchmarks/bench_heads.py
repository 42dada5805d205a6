"""Forward + backward time per episode of every head, at the papers' sizes.

    python benchmarks/bench_heads.py                # CPU, and CUDA when present
    python benchmarks/bench_heads.py --devices cpu --repeats 3
    python benchmarks/bench_heads.py --small        # tiny sizes, a quick smoke run

One episode: 5-way 5-shot, 5 queries per class (25 support + 25 query videos), L = 8 frames,
D = 2048, D' = 1152; TRX with Omega = {2, 3}; STRM with 16 patches per frame (Omega = {2});
MASTAF with 49 positions (2048 x 1 x 7 x 7 maps) and 64 training classes for the global
classifier. The inputs require gradients, as backbone features do in training; the heads
run in training mode (dropout on) and the step is ``loss.backward()`` of the head's loss.

Two slow references from ``reference_trx_loop.py``, with the same parameters as ``TRXHead``:

- ``trx-reference``: the plain per-tuple, per-class loop (every tuple concatenated and
  projected on its own; for every class and every query tuple its own attention);
- ``trx-released-style``: the released code's formulation (all tuple concatenations built
  with ``index_select`` and projected in one call, then a loop over classes and queries).

The script first checks that both give the same logits and input gradients as ``TRXHead``
(eval mode, allclose), then times every head in turn, interleaved, and prints the median
(and the fastest) milliseconds per episode and the speed-up of ``TRXHead`` over each.

The released code itself (``--released-trx PATH``, the folder of a clone of
https://github.com/tobyperrett/trx holding its ``model.py`` and ``utils.py``; not shipped with
fsvid): its ``TemporalCrossTransformer`` for every cardinality, built with a stub of its
``args`` at the sizes above, with random weights from ``torch.manual_seed(0)``; ``TRXHead``
gets those weights through ``fsvid.convert.from_official``. The row ``trx-released`` times the
mean of their logits (``CNN_TRX.forward`` without the backbone); the check prints the largest
relative logit difference and the largest input-gradient difference (relative to the
released gradient's largest entry). Its ``.cuda()`` calls are sent to the benchmark's device.

    python benchmarks/bench_heads.py --devices cpu --threads 2 --released-trx ~/src/trx --only trx trx-released
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_trx_loop import reference_trx_logits, tuple_loop_trx_logits  # noqa: E402

from fsvid.convert import from_official  # noqa: E402
from fsvid.heads import PrototypeHead, STRMHead, TRXHead  # noqa: E402
from fsvid.losses import episode_cross_entropy, mastaf_loss, strm_loss  # noqa: E402

try:  # the MASTAF head lives in fsvid.heads.mastaf
    from fsvid.heads.mastaf import MASTAFHead
except ModuleNotFoundError:  # hook: the row is skipped until the module exists
    MASTAFHead = None


def make_inputs(shape: tuple[int, ...], way: int, shots: int, per_class: int, device: torch.device, seed: int = 0):
    """Random features for one episode (support in shuffled class order), requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    support_labels = torch.arange(way).repeat_interleave(shots)[torch.randperm(way * shots, generator=g)]
    query_labels = torch.arange(way).repeat_interleave(per_class)
    support = torch.randn(way * shots, *shape, generator=g)
    query = torch.randn(way * per_class, *shape, generator=g)
    if len(shape) == 4 and shape[1] == 1:  # MASTAF maps: non-negative like post-ReLU features
        support, query = support.relu(), query.relu()
    return [t.to(device) for t in (support, support_labels, query, query_labels)]


def episode_step(head: nn.Module, loss_of: Callable, inputs: list[Tensor]) -> Callable[[], None]:
    """A closure running one forward + backward."""
    support, support_labels, query, query_labels = inputs
    support.requires_grad_(True)
    query.requires_grad_(True)

    def step() -> None:
        head.zero_grad(set_to_none=True)
        support.grad = query.grad = None
        loss_of(head, support, support_labels, query, query_labels).backward()

    return step


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Milliseconds of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def check_reference(head: TRXHead, inputs: list[Tensor], reference: Callable = tuple_loop_trx_logits) -> str:
    """Logits and input gradients of TRXHead vs a reference, in eval mode."""
    support, support_labels, query, query_labels = [t.detach() for t in inputs]
    head.eval()
    results = []
    for compute in (lambda s, q: head(s, support_labels, q).logits, lambda s, q: reference(head, s, support_labels, q)):
        s, q = support.clone().requires_grad_(True), query.clone().requires_grad_(True)
        logits = compute(s, q)
        nn.functional.cross_entropy(logits, query_labels, reduction="sum").backward()
        results.append((logits.detach(), s.grad, q.grad))
    head.train()
    (fast, fast_s, fast_q), (ref, ref_s, ref_q) = results
    scale = float(ref.abs().max())
    same_logits = torch.allclose(fast, ref, rtol=1e-4, atol=1e-5 * scale)
    same_grads = torch.allclose(fast_s, ref_s, rtol=1e-3, atol=1e-4 * float(ref_s.abs().max())) and torch.allclose(
        fast_q, ref_q, rtol=1e-3, atol=1e-4 * float(ref_q.abs().max())
    )
    worst = float(((fast - ref).abs() / ref.abs().clamp_min(1e-12)).max())
    if not (same_logits and same_grads):
        raise SystemExit(f"TRXHead and {reference.__name__} disagree (max relative logit difference {worst:.2e})")
    return f"TRXHead == {reference.__name__}: logits allclose (max rel. diff {worst:.1e}), input gradients allclose"


def load_released_trx(folder: Path) -> ModuleType:
    """Import ``model.py`` of the released TRX code from ``folder`` (its ``from utils import ...``
    finds the ``utils.py`` beside it; torchvision must be installed)."""
    model_file = folder / "model.py"
    if not model_file.is_file() or not (folder / "utils.py").is_file():
        raise SystemExit(
            f"--released-trx: {folder} must hold the released model.py and utils.py "
            "(git clone https://github.com/tobyperrett/trx and pass that folder)"
        )
    saved_utils = sys.modules.pop("utils", None)  # the released model.py imports a top-level `utils`
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("released_trx_model", model_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("utils", None)
        if saved_utils is not None:
            sys.modules["utils"] = saved_utils
    return module


@contextlib.contextmanager
def cuda_calls_to(device: torch.device) -> Iterator[None]:
    """Send the released code's ``tensor.cuda()`` calls (tuple indices, the logits buffer) to ``device``."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda = original


class ReleasedTRX(nn.Module):
    """The released ``TemporalCrossTransformer`` of every cardinality, logits averaged as ``CNN_TRX`` does."""

    def __init__(self, module: ModuleType, dim: int, out_dim: int, seq_len: int, cardinalities, way, shots, per_class, device):
        super().__init__()
        args = SimpleNamespace(
            trans_linear_in_dim=dim, trans_linear_out_dim=out_dim, way=way, shot=shots,
            query_per_class=per_class, seq_len=seq_len, temp_set=list(cardinalities), trans_dropout=0.1,
        )  # fmt: skip
        self.device = device
        with cuda_calls_to(device):
            self.transformers = nn.ModuleList(module.TemporalCrossTransformer(args, w) for w in cardinalities)

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor) -> Tensor:
        with cuda_calls_to(self.device):
            logits = [t(support, support_labels, query)["logits"] for t in self.transformers]
        return torch.stack(logits, dim=-1).mean(dim=-1)  # (queries, way)


def check_released(head: TRXHead, released: ReleasedTRX, inputs: list[Tensor]) -> str:
    """Logits and input gradients of TRXHead vs the released code, in eval mode (no dropout)."""
    support, support_labels, query, query_labels = [t.detach() for t in inputs]
    results = []
    for module, compute in ((head, lambda s, q: head(s, support_labels, q).logits), (released, lambda s, q: released(s, support_labels, q))):
        module.eval()
        s, q = support.clone().requires_grad_(True), query.clone().requires_grad_(True)
        logits = compute(s, q)
        nn.functional.cross_entropy(logits, query_labels, reduction="sum").backward()
        results.append((logits.detach(), s.grad, q.grad))
        module.zero_grad(set_to_none=True)
        module.train()
    (fast, fast_s, fast_q), (ref, ref_s, ref_q) = results
    logit_diff = float(((fast - ref).abs() / ref.abs().clamp_min(1e-12)).max())
    grad_diff = [float((a - b).abs().max() / b.abs().max()) for a, b in ((fast_s, ref_s), (fast_q, ref_q))]
    return (
        f"TRXHead vs the released code: logits max relative difference {logit_diff:.1e}; input gradients "
        f"max difference / max |released gradient| {grad_diff[0]:.1e} (support), {grad_diff[1]:.1e} (query)"
    )


def build(
    device: torch.device, small: bool, released: ModuleType | None = None
) -> dict[str, tuple[nn.Module, Callable, list[Tensor]]]:
    """Every head with its loss and inputs, at the papers' sizes (or tiny ones with ``small``);
    with the released TRX module, also ``trx-released``, and ``trx`` then has its weights."""
    way, shots, per_class, seq_len = 5, 5, 5, 8
    dim, out_dim, patches, positions, n_global = (2048, 1152, 16, 49, 64) if not small else (64, 32, 16, 49, 8)
    side = int(positions**0.5)
    torch.manual_seed(0)
    frames = make_inputs((seq_len, dim), way, shots, per_class, device)
    ce = lambda head, s, sl, q, ql: episode_cross_entropy(head(s, sl, q), ql)  # noqa: E731
    trx = TRXHead(dim, out_dim, seq_len, (2, 3)).to(device).train()
    if released is not None:
        torch.manual_seed(0)
        released_trx = ReleasedTRX(released, dim, out_dim, seq_len, (2, 3), way, shots, per_class, device).to(device)
        weights = {f"transformers.{k}": v for k, v in released_trx.transformers.state_dict().items()}
        config = {"L": seq_len, "D": dim, "Dout": out_dim, "temp_set": [2, 3]}
        trx = from_official("trx", weights, config).to(device).train()
    heads = {
        "prototype": (PrototypeHead().to(device).train(), ce, frames),
        "trx": (trx, ce, frames),
        "trx-reference": (
            trx,
            lambda head, s, sl, q, ql: episode_cross_entropy_of(tuple_loop_trx_logits(head, s, sl, q), ql),
            frames,
        ),
        "trx-released-style": (
            trx,
            lambda head, s, sl, q, ql: episode_cross_entropy_of(reference_trx_logits(head, s, sl, q), ql),
            frames,
        ),
        "strm": (
            STRMHead(dim, out_dim, seq_len, patches).to(device).train(),
            lambda head, s, sl, q, ql: strm_loss(head(s, sl, q), ql),
            make_inputs((seq_len, patches, dim), way, shots, per_class, device, seed=1),
        ),
    }
    if released is not None:
        heads["trx-released"] = (
            released_trx.train(),
            lambda head, s, sl, q, ql: episode_cross_entropy_of(head(s, sl, q), ql),
            frames,
        )
    if MASTAFHead is not None:
        maps = make_inputs((dim, 1, side, side), way, shots, per_class, device, seed=2)
        global_labels = torch.randint(0, n_global, (way * per_class,), generator=torch.Generator().manual_seed(3)).to(device)
        heads["mastaf"] = (
            MASTAFHead(positions=positions, channels=dim, n_global=n_global).to(device).train(),
            lambda head, s, sl, q, ql: mastaf_loss(head(s, sl, q, ql), ql, global_labels),
            maps,
        )
    return heads


def episode_cross_entropy_of(logits: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, labels, reduction="sum")


def run(
    device: torch.device, repeats: int, warmup: int, small: bool, only: list[str] | None = None,
    released: ModuleType | None = None,
) -> None:  # fmt: skip
    heads = build(device, small, released)
    print(f"\n== {device} ({torch.get_num_threads()} CPU threads)" + (" [small sizes]" if small else ""))
    print(check_reference(heads["trx"][0], heads["trx"][2], tuple_loop_trx_logits))
    print(check_reference(heads["trx"][0], heads["trx"][2], reference_trx_logits))
    if released is not None:
        print(check_released(heads["trx"][0], heads["trx-released"][0], heads["trx"][2]))
    selected = set(only or heads) | {"trx"}
    steps = {name: episode_step(head, loss_of, inputs) for name, (head, loss_of, inputs) in heads.items() if name in selected}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    load_before = os.getloadavg()[0]
    for _ in range(repeats):  # interleaved, so background load hits every head alike
        for name, step in steps.items():
            times[name].append(timed(step, device))
    print(f"load average (1 min) before / after the timed runs: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"{'head':<20}{'median ms':>12}{'fastest ms':>12}")
    for name, values in times.items():
        print(f"{name:<20}{statistics.median(values):>12.1f}{min(values):>12.1f}")
    if MASTAFHead is None and only is None:
        print("mastaf         (fsvid.heads.mastaf not available: skipped)")
    references = {
        "trx-reference": "the per-tuple, per-class loop",
        "trx-released-style": "the released code's formulation",
        "trx-released": "the released code itself",
    }
    for reference, label in references.items():
        if reference not in times:
            continue
        ratio = statistics.median(times[reference]) / statistics.median(times["trx"])
        best = min(times[reference]) / min(times["trx"])
        paired = statistics.median(r / f for r, f in zip(times[reference], times["trx"]))
        print(
            f"TRX speed-up over {label}: {ratio:.1f}x (medians), {best:.1f}x (fastest), "
            f"{paired:.1f}x (median of paired ratios)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="tiny sizes for a quick smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", nargs="+", default=None, help="time only these heads and trx (the TRX checks always run)")
    parser.add_argument(
        "--released-trx", type=Path, default=None, metavar="PATH",
        help="folder with the released TRX model.py and utils.py (a clone of tobyperrett/trx): race it too",
    )  # fmt: skip
    args = parser.parse_args()
    released = load_released_trx(args.released_trx.expanduser()) if args.released_trx else None
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("\n== cuda: not available, skipped")
            continue
        run(torch.device(name), args.repeats, args.warmup, args.small, args.only, released)


if __name__ == "__main__":
    main()
