"""Evaluation on a fixed task list: accuracy, CI, per class, confusion, paired comparisons."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from engine_helpers import fsvid_home, one_thread, reference_run, tiny_config, tiny_dataset  # noqa: F401
from fsvid.engine import (
    EvalResult,
    compare_runs,
    episode_dataset,
    evaluate_config,
    evaluate_model,
    evaluate_run,
    load_trained_model,
    locate_data,
)
from fsvid.heads import HeadOutput


class FirstColumn(nn.Module):
    """Always predicts task label 0; with ``test_logits`` that always predict the last label."""

    def __init__(self, test_logits: bool = False) -> None:
        super().__init__()
        self.test_logits = test_logits

    def forward(self, support, support_labels, query, query_labels=None):
        way = int(support_labels.max()) + 1
        logits = torch.zeros(query.shape[0], way)
        logits[:, 0] = 1.0
        extras = {}
        if self.test_logits:
            extras["test_logits"] = torch.zeros(query.shape[0], way)
            extras["test_logits"][:, -1] = 1.0
        return HeadOutput(logits=logits, extras=extras)


@pytest.fixture
def test_tasks(tiny_dataset, tmp_path, fsvid_home):
    config = tiny_config(tiny_dataset, tmp_path / "run", "eval.tasks=5")
    return episode_dataset(config, "test", 5, config.eval.seed, False, locate_data(config, progress=False), False)


@pytest.mark.parametrize("test_logits", [False, True])
def test_accuracy_confusion_and_per_class_of_a_constant_model(test_tasks, test_logits):
    result = evaluate_model(FirstColumn(test_logits), test_tasks, progress=False)
    # 3-way tasks, one query per class: exactly one query right per task
    assert np.array_equal(result.task_accuracies, np.full(5, 1 / 3))
    assert result.accuracy.mean == pytest.approx(100 / 3) and result.accuracy.ci95 == pytest.approx(0.0)
    assert result.confusion.sum() == 15 and result.confusion.shape == (len(test_tasks.class_names),) * 2
    predicted_label = -1 if test_logits else 0  # STRM-style test_logits take precedence over logits
    expected = np.zeros_like(result.confusion)
    for i in range(5):
        classes = test_tasks.task(i).classes  # split-level class of task labels 0, 1, 2
        for c in classes:
            expected[c, classes[predicted_label]] += 1
    assert np.array_equal(result.confusion, expected)
    assert result.task_list["tasks"] == 5 and result.task_list["way"] == 3 and len(result.task_list["fingerprint"]) == 64


def test_evaluate_run_saves_results_and_is_reproducible(reference_run, tmp_path, fsvid_home, one_thread):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    result = evaluate_run(run, tasks=6, progress=False)
    assert (run / "eval_test.json").is_file() and (run / "eval_test_tasks.npy").is_file()
    assert result.task_accuracies.shape == (6,)
    assert set(np.round(result.task_accuracies * 3, 6)) <= {0.0, 1.0, 2.0, 3.0}
    assert result.accuracy.mean == pytest.approx(100 * result.task_accuracies.mean())
    assert result.accuracy.ci95 == pytest.approx(100 * 1.96 * result.task_accuracies.std() / np.sqrt(6))
    assert result.confusion.sum() == 6 * 3
    assert set(result.per_class) <= set(result.class_names)
    assert result.meta["checkpoint"] == "best" and result.task_list["split"] == "test"

    saved = EvalResult.load(run, "eval_test")
    assert np.array_equal(saved.task_accuracies, result.task_accuracies)
    assert saved.task_list == result.task_list and np.array_equal(saved.confusion, result.confusion)
    again = evaluate_run(run, tasks=6, progress=False, save=False)
    assert np.array_equal(again.task_accuracies, result.task_accuracies)

    model, config = load_trained_model(run)
    assert not model.training and config.model.method == "trx"


def test_paired_comparison_on_the_same_tasks_and_refusals(reference_run, tiny_dataset, tmp_path, fsvid_home, one_thread):
    run_a = tmp_path / "a"
    shutil.copytree(reference_run, run_a)
    a = evaluate_run(run_a, tasks=6, progress=False)

    # b: an untrained prototype baseline, evaluated on the same task list
    config_b = tiny_config(tiny_dataset, tmp_path / "b", "model.method=prototype")
    b = evaluate_config(config_b, tasks=6, untrained=True, progress=False)
    assert b.task_list == a.task_list
    paired = compare_runs(run_a, tmp_path / "b")
    assert paired.difference.mean == pytest.approx(100 * (a.task_accuracies - b.task_accuracies).mean())
    assert paired.a_better + paired.b_better + paired.ties == 6

    # another eval seed, or another number of tasks: not the same tasks
    config_c = tiny_config(tiny_dataset, tmp_path / "c", "model.method=prototype", "eval.seed=7")
    evaluate_config(config_c, tasks=6, untrained=True, progress=False)
    with pytest.raises(ValueError, match="seed: 1234 vs 7"):
        compare_runs(run_a, tmp_path / "c")
    config_d = tiny_config(tiny_dataset, tmp_path / "d", "model.method=prototype")
    evaluate_config(config_d, tasks=4, untrained=True, progress=False)
    with pytest.raises(ValueError, match="tasks: 6 vs 4"):
        compare_runs(run_a, tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="fsvid evaluate"):
        compare_runs(run_a, tmp_path / "nothing")
