"""Figures: learning curves, overlays across frameworks, toy data and decision boundaries.

Matplotlib runs headless (Agg) and every figure is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from train.engine.results import save_figure


class _Pyplot:
    """``matplotlib.pyplot``, headless (Agg), imported on first use: importing it takes a large share of
    a command's start-up, and most processes (workers, bench children, ``--help``) draw nothing."""

    def __getattr__(self, name: str):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot
        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()

SPLIT_STYLE = {"train": "-", "test": "--"}


def _curve(rows: Sequence[dict], split: str, key: str, x: str = "step"):
    pts = [(r[x], r[key]) for r in rows if r["split"] == split]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(runs: Mapping[str, Sequence[dict]], path, *, title: str, xlabel: str = "step") -> None:
    """Loss and accuracy, train (solid) and test (dashed), one colour per run label."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ci, (label, rows) in enumerate(runs.items()):
        for split, ls in SPLIT_STYLE.items():
            for ax, key in zip(axes, ("loss", "accuracy")):
                xs, ys = _curve(rows, split, key, xlabel)
                if xs:
                    ax.plot(xs, ys, ls, color=f"C{ci}", label=f"{label} {split}", alpha=0.85)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_toy_datasets(datasets: Sequence, path) -> None:
    """Scatter plot of each toy set's train (dots) and test (crosses) points."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for c in (0, 1):
            ax.scatter(*d.train_x[d.train_y == c].T, s=6, color=f"C{c}", alpha=0.6, label=f"class {c} train")
            ax.scatter(*d.test_x[d.test_y == c].T, s=14, color=f"C{c}", marker="x", label=f"class {c} test")
        ax.set_title(d.name)
        ax.set_aspect("equal", adjustable="datalim")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)


def plot_decision_boundary(predict_proba: Callable[[np.ndarray], np.ndarray], data, path, *, title: str) -> None:
    """P(class 1) over a grid around the data, with the test points on top."""
    pts = np.concatenate([data.train_x, data.test_x])
    lo, hi = pts.min(0) - 0.5, pts.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    p1 = np.asarray(predict_proba(grid))[:, 1].reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    cs = ax.contourf(gx, gy, p1, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, p1, levels=[0.5], colors="k", linewidths=1)
    for c in (0, 1):
        ax.scatter(*data.test_x[data.test_y == c].T, s=12, color=f"C{c}", edgecolor="k", linewidth=0.3)
    fig.colorbar(cs, ax=ax, label="P(class 1)")
    ax.set_title(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], path, *, title: str) -> np.ndarray:
    """Row-normalised confusion matrix (rows: true class). Returns the raw count matrix."""
    k = len(class_names)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    save_figure(fig, path)
    plt.close(fig)
    return cm


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                       path, *, n: int = 16, title: str = "misclassified test images") -> None:
    """A grid of the first ``n`` misclassified uint8 images (N, H, W, 3), labelled true -> predicted."""
    wrong = np.flatnonzero(y_true != y_pred)[:n]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(images[i])
        ax.set_title(f"{class_names[y_true[i]]}\n-> {class_names[y_pred[i]]}", fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_grad_norms(curves: dict[str, list[float]], path, *, title: str) -> None:

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, g in curves.items():
        ax.semilogy(np.arange(1, len(g) + 1), g, marker=".", label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_sweep(table: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (cell, rows) in enumerate(table.items()):
        t = [r["input_length"] for r in rows]
        m = np.array([r["mean"] for r in rows])
        ax.plot(t, m, marker="o", color=f"C{i}", label=f"{cell} (mean)")
        ax.fill_between(t, [r["min"] for r in rows], [r["max"] for r in rows], color=f"C{i}", alpha=0.2,
                        label=f"{cell} (min-max over seeds)")
    ax.axhline(0.1, color="gray", ls=":", label="chance")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("final test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("palindrome accuracy vs sequence length")
    save_figure(fig, path)
    plt.close(fig)


def plot_group_points(grouped: dict, path) -> None:
    """One panel per metric: each group's runs as points, its mean as a bar with the 95% interval."""
    metrics = [(k, m) for k, m in grouped["metrics"].items()
               if all(g["metrics"][k] is not None for g in grouped["groups"])]
    cols = 3
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    names = [g["name"] for g in grouped["groups"]]
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, (key, m) in zip(axes.ravel(), metrics):
        for i, g in enumerate(grouped["groups"]):
            v, d = g["values"][key], g["metrics"][key]
            jitter = np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), v, s=14, color=f"C{i}", alpha=0.7, zorder=3)
            lo, hi = d["ci"] or (d["mean"], d["mean"])
            ax.errorbar(i + 0.3, d["mean"], yerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="D", color=f"C{i}",
                        capsize=4, markersize=5)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.3)
        ax.set_title(m["label"] + (f" ({m['unit']})" if m["unit"] else ""), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"runs by {grouped['by']}: points are runs, diamonds the mean with its 95% interval")
    save_figure(fig, path)
    plt.close(fig)


def plot_group_curves(grouped: dict, path) -> None:
    """Each group's mean test loss and accuracy, with the 95% interval of the mean as a band."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, g in enumerate(grouped["groups"]):
        c = g["curves"]
        for ax, key in zip(axes, ("test_loss", "test_accuracy")):
            ax.plot(c["x"], c[key]["mean"], ("-", "--", ":", "-.")[i % 4], color=f"C{i}",  # twins lie on each other
                    label=f"{g['name']} (n = {len(g['runs'])})")
            if c[key]["ci_low"] is not None:
                ax.fill_between(c["x"], c[key]["ci_low"], c[key]["ci_high"], color=f"C{i}", alpha=0.2)
    for ax, key in zip(axes, ("test loss", "test accuracy")):
        ax.set_xlabel(grouped["x"])
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"mean test curves by {grouped['by']}; bands: 95% interval of the mean")
    save_figure(fig, path)
    plt.close(fig)
