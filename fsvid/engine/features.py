"""Training and evaluation from the feature cache (:mod:`fsvid.features`).

With a frozen backbone every task would run the same videos through the same network again;
the cache runs each video of a split once. The engine uses it in two ways:

- **training** (``data.cache`` set, ``model.trainable: none``): the head is trained on
  :class:`fsvid.features.FeatureEpisodeDataset` tasks (the same tasks as from the videos; with
  ``data.cache_views > 0`` each video of a training task takes one of that many augmented
  views, drawn from the task's seed);
- **evaluation** (by default, :func:`evaluation_features`): in eval mode with deterministic
  test clips a video's backbone features do not depend on the task, so the split's features
  are computed once with the model's backbone (trained or not) and every task is scored from
  them: the prototype, TRX and STRM heads from per-video precomputations
  (:class:`fsvid.heads.trx.PrecomputedTRX`, ...), MASTAF (and STRM with ``qc_mode:
  released``) with the head on each task's cached features. Same accuracy on every task as
  the per-task path (``fsvid evaluate --no-cache``), in a fraction of the time. A trained
  backbone's features are written to the run folder's ``eval_features/`` and removed after
  the evaluation (they belong to one checkpoint); a frozen backbone's stay there for the
  next evaluation. Validation during training does the same with the current backbone
  (:func:`evaluate_with_features`). Jittered test frames (``data.test_sampling: jittered``)
  change the clips in every task: those runs are evaluated per task.

A split's cache lives in ``<root>/<split>_<first 12 hex digits of the backbone's weight
hash>``, so caches of different weights never collide, and a cache folder shared by runs with
the same frozen backbone is reused. With ``data.cache_form=maps`` the folder is
``<split>_<hash>_maps`` and holds the backbone's feature maps, read by every head in its own
form through a :class:`fsvid.features.CacheView`, so runs of the four methods with the same
frozen backbone and a shared ``data.cache`` folder run it once per video. ``<root>`` is ``data.cache`` (``auto``: the run folder's
``cache/``). Building a split's cache ahead of a run (``fsvid cache``) is
:func:`fsvid.engine.runs.build_run_cache`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fsvid.backbones import VideoBackbone
from fsvid.features import (
    CacheMismatchError,
    CacheView,
    FeatureCache,
    FeatureEpisodeDataset,
    build_feature_cache_from_dataset,
    OutputForm,
    evaluate_precomputed,
    module_sha256,
)
from fsvid.config import ConfigError, RunConfig
from fsvid.data import EpisodeDataset
from fsvid.engine.distributed import Distributed
from fsvid.engine.evaluate import EvalResult, evaluate_model, fingerprint_of, task_digest, task_list_of
from fsvid.engine.metrics import confusion_matrix, mean_and_ci
from fsvid.heads import PrecomputedPrototypes, PrecomputedSTRM, PrecomputedTRX, PrototypeHead, STRMHead, TRXHead


def cache_root(config: RunConfig, run_folder: Path) -> Path:
    """The folder holding a run's split caches: ``data.cache``, or for ``auto`` the run
    folder's ``cache/`` (``run_folder``: the run's folder, e.g. ``fsvid.engine.run_dir(config)``)."""
    if config.data.cache is None:
        raise ConfigError("data.cache is not set (use data.cache=auto or data.cache=/path/to/caches)")
    if config.data.cache == "auto":
        return Path(run_folder) / "cache"
    return Path(config.data.cache).expanduser()


def cache_folder(root: str | Path, split: str, backbone: nn.Module, form: str = "head") -> Path:
    """``<root>/<split>_<weights hash>`` (``form="maps"``: ``..._maps``): the cache of ``split``
    for these backbone weights."""
    suffix = "_maps" if form == "maps" else ""
    return Path(root) / f"{split}_{module_sha256(backbone)[:12]}{suffix}"


#: The run folder's folder for the features of evaluations that set no cache.
EVALUATION_FEATURES = "eval_features"


@dataclasses.dataclass(frozen=True)
class EvaluationFeatures:
    """Where an evaluation keeps the split's features: ``root`` (holding
    ``<split>_<weights hash>/``), their ``dtype`` on disk, and whether they are ``kept``."""

    root: Path
    dtype: str = "float32"
    kept: bool = True


def evaluation_features(config: RunConfig, run: Path, cache: str | bool | None = None) -> EvaluationFeatures | None:
    """How :func:`fsvid.engine.evaluate_run` computes the features (``cache`` as there;
    ``None``: per task, also when the test clips change from task to task).

    A trained backbone has other weights at every checkpoint, so its features are of use to
    one evaluation only: they go to ``<run>/eval_features/`` and are removed afterwards. A
    frozen backbone (``model.trainable: none``) is the same at every checkpoint: its features
    stay there and the next evaluation of the split only reads them. ``data.cache`` or an
    explicit folder keep the features (float16, as ``fsvid cache`` builds them).
    """
    if cache is False:
        return None
    varies = clips_vary_by_task(config)
    if varies:
        if cache is None:
            return None  # each task's own clips
        raise ConfigError(f"evaluation from a feature cache needs the same test clip of a video in every task, but {varies}")
    if cache is None or cache is True:
        if config.data.cache is not None:
            return EvaluationFeatures(cache_root(config, run), "float16")
        return EvaluationFeatures(run / EVALUATION_FEATURES, "float32", kept=config.model.trainable == "none")
    return EvaluationFeatures(run / "cache" if cache == "auto" else Path(cache).expanduser(), "float16")


def clips_vary_by_task(config: RunConfig) -> str | None:
    """Why a video's evaluation clip (hence its features) changes from task to task, or None."""
    if config.data.test_sampling != "deterministic":
        return f"data.test_sampling={config.data.test_sampling} draws other frames in every task"
    return None


def split_cache(
    config: RunConfig,
    dataset: EpisodeDataset,
    backbone: nn.Module,
    split: str,
    root: str | Path,
    views: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    distributed: Distributed | None = None,
    dtype: str = "float16",
) -> FeatureCache | CacheView:
    """The cache of ``dataset``'s videos for ``backbone``: opened, finished or built (by rank 0,
    while the other processes wait); ``dtype``: the features on disk (float16 or float32). With
    ``data.cache_form=maps`` the cache holds the backbone's maps and is returned as a
    :class:`fsvid.features.CacheView` in the backbone's own output form."""
    distributed = distributed or Distributed()
    form = config.data.cache_form
    folder = cache_folder(root, split, backbone, form)
    if distributed.main:
        if form == "maps":
            check_maps_give_output(backbone, config.data.frames, config.data.crop)
        with _output_form(backbone, "maps") if form == "maps" else nullcontext():
            build_feature_cache_from_dataset(
                folder,
                dataset,
                backbone,
                train_views=views,
                backbone_name=config.model.backbone,
                weights_file=config.model.backbone_weights if _is_file(config.model.backbone_weights) else None,
                num_workers=config.data.workers,
                overwrite=overwrite,
                progress=progress,
                dtype=dtype,
            )
    distributed.barrier()
    cache = FeatureCache(folder)
    return CacheView(cache, OutputForm.of(backbone)) if form == "maps" else cache


@contextmanager
def _output_form(backbone: nn.Module, output: str) -> Iterator[None]:
    """``backbone.output`` set to ``output`` for the duration (restored afterwards); for
    ``maps`` also the patch settings, which do not shape maps, to one value, so that the
    cache's recorded settings are the same whichever head's backbone builds it."""
    saved = backbone.output, backbone.patch_grid, backbone.patch_pool
    backbone.output = output
    if output == "maps":
        backbone.patch_grid, backbone.patch_pool = None, "max"
    try:
        yield
    finally:
        backbone.output, backbone.patch_grid, backbone.patch_pool = saved


@torch.no_grad()
def check_maps_give_output(backbone: nn.Module, frames: int, crop: int) -> None:
    """Raise ``ConfigError`` unless the backbone's output is its maps reshaped
    (:func:`fsvid.backbones.base.shape_output`), checked on one random clip: false for a ViT
    whose frame vectors are class tokens, which a cache of maps cannot give."""
    if not isinstance(backbone, VideoBackbone):
        raise ConfigError(f"data.cache_form=maps needs an fsvid VideoBackbone, got {type(backbone).__name__}")
    was_training = backbone.training
    backbone.eval()
    clip = torch.rand(1, frames, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    clip = clip.to(next(backbone.parameters()).device)
    form = OutputForm.of(backbone)
    try:
        direct = backbone(clip)
        with _output_form(backbone, "maps"):
            derived = form.apply(backbone(clip))
    finally:
        backbone.train(was_training)
    if direct.shape != derived.shape or not torch.allclose(direct, derived, rtol=1e-4, atol=1e-5):
        raise ConfigError(
            f"data.cache_form=maps: the {type(backbone).__name__} backbone's {backbone.output!r} output is not "
            "a function of its feature maps (class tokens?); use data.cache_form=head"
        )


def _is_file(value: str | None) -> bool:
    return value is not None and Path(value).expanduser().is_file()


def feature_episodes(dataset: EpisodeDataset, cache: FeatureCache | CacheView, train: bool) -> FeatureEpisodeDataset:
    """The tasks of ``dataset`` (same way, shot, queries, seed, number) on cached features;
    training tasks use the cache's augmented views when it has some, else the test view."""
    keys = [video.key for video in dataset.videos]
    if keys != cache.video_keys or list(dataset.class_names) != cache.class_names:
        raise CacheMismatchError(
            f"the feature cache in {cache.folder} holds {cache.num_videos} videos of {len(cache.class_names)} classes, "
            f"not the {len(keys)} videos of {len(dataset.class_names)} classes of this split: delete it or use "
            "another data.cache folder"
        )
    return FeatureEpisodeDataset(
        cache,
        way=dataset.way,
        shot=dataset.shot,
        query=dataset.query,
        train=train and cache.train_views > 0,
        num_tasks=dataset.num_tasks,
        seed=dataset.seed,
        query_sampling=dataset.sampler.query_sampling,
    )


def precomputed_scorer(head: nn.Module, cache: FeatureCache | CacheView, progress: bool = False):
    """The fast per-video form of an eval-mode head, or ``None`` for heads without one: MASTAF,
    and STRM with the released query-class classifier (``qc_mode: released``), whose dropout
    stays on at test time, so that its score is drawn anew in every task (the head itself then
    scores each task from the cached features, with the same draws as on the videos)."""
    if isinstance(head, PrototypeHead):
        return PrecomputedPrototypes(head, cache)
    if isinstance(head, TRXHead):
        return PrecomputedTRX(head, cache, progress=progress)
    if isinstance(head, STRMHead) and not (head.query_class is not None and head.query_class.frozen):
        return PrecomputedSTRM(head, cache, progress=progress)
    return None


@torch.no_grad()
def evaluate_from_cache(
    model: nn.Module,
    episodes: FeatureEpisodeDataset,
    device: torch.device,
    amp: str = "none",
    progress: bool = True,
    split: str = "test",
    distributed: Distributed | None = None,
) -> EvalResult:
    """Score ``model``'s head on cached-feature tasks: the same tasks, accuracies, confusion
    and task-list fingerprint as :func:`fsvid.engine.evaluate_model` on the videos (up to
    float rounding of the features)."""
    model.eval()
    scorer = precomputed_scorer(model.head, episodes.cache, progress)
    if scorer is None:
        return evaluate_model(model, episodes, device, amp, progress, distributed, features=True, split=split)
    evaluation = evaluate_precomputed(scorer, episodes, progress=progress)
    keys = episodes.cache.video_keys
    digests = np.zeros(len(episodes), dtype=np.int64)
    for i in range(len(episodes)):
        task = episodes.task(i)
        digests[i] = task_digest([keys[v] for v in task.support.reshape(-1)], [keys[v] for v in task.query.reshape(-1)])
    confusion = confusion_matrix(evaluation.true_classes, evaluation.predicted, len(evaluation.class_names))
    return EvalResult(
        task_accuracies=evaluation.accuracies.astype(np.float64),
        accuracy=mean_and_ci(evaluation.accuracies),
        class_names=evaluation.class_names,
        confusion=confusion,
        task_list=task_list_of(episodes, split, fingerprint_of(digests)),
    )


def evaluate_with_features(
    model: nn.Module,
    config: RunConfig,
    dataset: EpisodeDataset,
    split: str,
    plan: EvaluationFeatures,
    progress: bool,
    device: torch.device,
    distributed: Distributed,
) -> EvalResult:
    """The tasks of ``dataset`` scored from the features of its videos, computed once under
    ``plan.root`` with ``model``'s backbone (or found there); removed afterwards unless
    ``plan.kept``. Used by evaluation and by validation during training."""
    features = split_cache(config, dataset, model.backbone, split, plan.root, 0, progress, distributed=distributed,
                           dtype=plan.dtype)
    try:
        episodes = feature_episodes(dataset, features, train=False)
        return evaluate_from_cache(model, episodes, device, config.train.amp, progress, split, distributed)
    finally:
        if not plan.kept:
            distributed.barrier()  # every process is done with them
            if distributed.main:
                discard_features(features, plan)


def discard_features(features: FeatureCache, plan: EvaluationFeatures) -> None:
    """Remove an evaluation's features that ``plan`` does not keep, and ``plan.root`` when it
    is then empty."""
    shutil.rmtree(features.folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        plan.root.rmdir()  # when empty
