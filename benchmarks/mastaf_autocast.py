"""How much bfloat16 autocast changes MASTAF's scores, without and with the head's float32 guard.

Random tasks of synthetic r3d50-sized maps (D = 2048 channels on a 7 x 7 grid, N = 49):
class ``c`` has a non-negative mean map, each video is that map plus noise, ReLU'd, so
the fp32 head is right on some but not all queries (``--noise`` sets how often). Every
task is scored three times by the same head in eval mode:

- fp32: no autocast (the reference);
- bf16, unguarded: ``head._scores`` (the head's arithmetic without its float32 guard) under
  ``torch.autocast(device, bfloat16)``, what the head computed before the guard;
- bf16, guarded: ``head(...)`` under the same autocast (the head turns autocast off).

Printed: the largest absolute logit difference to fp32 and the share of queries whose
predicted class agrees with fp32.

``--model PRESET`` scores whole models instead (backbone + head, random weights, random
clips in [0, 1]): the backbone then runs in bfloat16 in both bf16 cases, only the head differs.

    python benchmarks/mastaf_autocast.py                 # 200 tasks, 5-way 1-shot, 5 queries
    python benchmarks/mastaf_autocast.py --tasks 50 --noise 2.0 --device cuda
    python benchmarks/mastaf_autocast.py --model synthetic_mastaf --tasks 100
"""

from __future__ import annotations

import argparse

import torch

from fsvid.heads import MASTAFHead


def random_task(generator: torch.Generator, way: int, shot: int, queries: int, noise: float, channels: int = 2048):
    """support (way*shot, D, 7, 7), labels (way*shot,), query (queries, D, 7, 7), labels (queries,)."""
    means = torch.rand(way, channels, 7, 7, generator=generator)  # (way, D, 7, 7)
    support_labels = torch.arange(way).repeat_interleave(shot)
    query_labels = torch.randint(way, (queries,), generator=generator)

    def videos(labels: torch.Tensor) -> torch.Tensor:
        return torch.relu(means[labels] + noise * torch.randn(len(labels), channels, 7, 7, generator=generator))

    return videos(support_labels), support_labels, videos(query_labels), query_labels


def model_scorer(preset: str, device: torch.device):
    """A function task -> (fp32, bf16 unguarded, bf16 guarded) logits of a whole model."""
    from fsvid.config import load_config
    from fsvid.models import build_model

    config = load_config(preset)
    model = build_model(config, n_global=None).to(device).eval()
    head = model.head
    frames, crop = config.data.frames, config.data.crop

    def clips(generator: torch.Generator, videos: int) -> torch.Tensor:
        return torch.rand(videos, frames, 3, crop, crop, generator=generator).to(device)

    def score(support, support_labels, query):
        reference = model(support, support_labels, query).logits
        with torch.autocast(device.type, dtype=torch.bfloat16):
            features = model.features(torch.cat([support, query]))
            n = support.shape[0]
            unguarded = head._scores(features[:n], support_labels, features[n:], None, False).logits.float()
            guarded = model(support, support_labels, query).logits.float()
        return reference, unguarded, guarded

    return clips, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="a preset: score whole models on random clips")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    head = MASTAFHead(positions=49, channels=2048).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    if args.model:
        clips, score = model_scorer(args.model, device)
    results = {"bf16, unguarded": [0.0, 0, 0], "bf16, guarded": [0.0, 0, 0]}
    correct = total = 0
    with torch.no_grad():
        for _ in range(args.tasks):
            if args.model:
                support_labels = torch.arange(args.way).repeat_interleave(args.shot).to(device)
                query_labels = torch.randint(args.way, (args.queries,), generator=generator).to(device)
                support, query = clips(generator, len(support_labels)), clips(generator, args.queries)
                reference, unguarded, guarded = score(support, support_labels, query)
            else:
                support, support_labels, query, query_labels = (
                    t.to(device) for t in random_task(generator, args.way, args.shot, args.queries, args.noise)
                )
                reference = head(support, support_labels, query).logits  # (queries, way)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    unguarded = head._scores(support, support_labels, query, None, False).logits.float()
                    guarded = head(support, support_labels, query).logits.float()
            correct += int((reference.argmax(1) == query_labels).sum())
            total += len(query_labels)
            for name, logits in (("bf16, unguarded", unguarded), ("bf16, guarded", guarded)):
                entry = results[name]
                entry[0] = max(entry[0], float((logits - reference).abs().max()))
                entry[1] += int((logits.argmax(1) == reference.argmax(1)).sum())
                entry[2] += len(query_labels)
    what = f"model {args.model} on random clips" if args.model else f"maps with noise {args.noise}"
    print(f"{args.tasks} tasks, {args.way}-way {args.shot}-shot, {args.queries} queries, {what}, "
          f"on {device}: fp32 accuracy {correct / total:.3f}")
    for name, (difference, agree, count) in results.items():
        print(f"{name:16s} max |logit - fp32| = {difference:.4g}   prediction agreement = {agree / count:.4f}")


if __name__ == "__main__":
    main()
