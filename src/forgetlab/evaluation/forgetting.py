"""Forgetting metrics from before/after scores (formulas: shared/REFERENCE.md).

Single fine-tune: forgetting_i = R0[i] - R1[i] for every non-target task i; target gain = R1[t] - R0[t].
The loss counterpart is the rise of the per-token loss on reference answers: after - before.
"""

from __future__ import annotations

from statistics import mean


def summarize_forgetting(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    target: str | list[str],
) -> dict:
    """Per-task and mean forgetting (score points and loss increase) plus the target's gain."""
    targets = [target] if isinstance(target, str) else list(target)
    others = [t for t in before if t not in targets]
    forgetting = {t: before[t]["score"] - after[t]["score"] for t in others}
    loss_increase = {t: after[t]["loss"] - before[t]["loss"] for t in others}
    gains = [after[t]["score"] - before[t]["score"] for t in targets if t in before]
    return {
        "forgetting": forgetting,
        "loss_increase": loss_increase,
        "mean_forgetting": mean(forgetting.values()) if forgetting else 0.0,
        "mean_loss_increase": mean(loss_increase.values()) if loss_increase else 0.0,
        "target_gain": mean(gains) if gains else 0.0,
        "target_score_before": mean(before[t]["score"] for t in targets if t in before) if gains else None,
        "target_score_after": mean(after[t]["score"] for t in targets if t in after) if gains else None,
    }
