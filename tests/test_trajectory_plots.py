"""Trajectory plots: PNGs written and non-empty, sized by the data, and bad input refused."""

from __future__ import annotations

import pytest
from matplotlib.image import imread

from forgetlab.evaluation.selection import best_under_budgets, select_under_budget, trajectory
from forgetlab.report.trajectory_plots import (
    plot_continual_matrix,
    plot_learning_forgetting_trajectory,
    plot_task_scores_over_stages,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["a", "b", "c", "x"]
STAGES = [["a"], ["b", "c"]]
R = [[10, 20, 30, 50], [80, 25, 35, 48], [60, 90, 85, 46]]


def is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_matrix_heatmap_written_and_wider_with_more_tasks(tmp_path):
    small = plot_continual_matrix(R, TASKS, STAGES, tmp_path / "small.png")
    assert small == tmp_path / "small.png" and is_png(small)
    tasks = [f"t{i}" for i in range(10)]
    wide = plot_continual_matrix([[float(i) for i in range(10)], [50.0] * 10], tasks, [["t0"]], tmp_path / "sub" / "wide.png")
    assert is_png(wide)
    assert imread(wide).shape[1] > imread(small).shape[1]


def test_loss_matrix_scales_to_its_data(tmp_path):
    loss = [[3.0, 3.0, 3.0, 3.0], [0.5, 2.5, 2.8, 3.1], [1.5, 0.2, 0.1, 3.2]]
    path = plot_continual_matrix(loss, TASKS, STAGES, tmp_path / "loss.png", value_range=None,
                                 label="per-token loss", title="Loss after each stage")
    assert is_png(path)


def test_task_lines_written(tmp_path):
    assert is_png(plot_task_scores_over_stages(R, TASKS, STAGES, tmp_path / "lines.png"))


@pytest.mark.parametrize("plot", [plot_continual_matrix, plot_task_scores_over_stages])
def test_shape_mismatch_raises_and_writes_nothing(tmp_path, plot):
    with pytest.raises(ValueError, match="expected 3"):
        plot(R, TASKS[:3], STAGES, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="rows"):
        plot(R[:2], TASKS, STAGES, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_trajectory_plot_with_selected_point(tmp_path):
    history = [{"step": s, "scores": {"t": {"score": t}, "o": {"score": o}}}
               for s, t, o in [(0, 10, 80), (10, 40, 79), (20, 60, 75), (30, 70, 60)]]
    points = trajectory(history, "t")
    chosen = select_under_budget(history, "t", 5)
    assert chosen["step"] == 20
    path = plot_learning_forgetting_trajectory(points, tmp_path / "traj.png", selected=chosen, budget=5)
    assert is_png(path)
    assert is_png(plot_learning_forgetting_trajectory(points, tmp_path / "plain.png"))
    marks = best_under_budgets(history, "t", (0, 5, 100, -1))   # steps 0, 20, 30 and one None
    marked = plot_learning_forgetting_trajectory(points, tmp_path / "marked.png", budget_points=marks)
    assert is_png(marked) and not (imread(marked) == imread(tmp_path / "plain.png")).all()
    with pytest.raises(ValueError, match="no trajectory points"):
        plot_learning_forgetting_trajectory([], tmp_path / "empty.png")
