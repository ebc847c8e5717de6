"""Fig. 2 (weight trajectories) - where the last layer's weights go under each order of
training phases, seen in the PCA plane of their snapshots with ``B^T`` projected into it.

For every seed, four orders of phases run on chips with the seed's initialization:
``noise-only``, ``data-only`` (MNIST), ``noise->data`` and ``data->noise``. Each phase is
``trajectory_steps`` steps (Adam lr 1e-4, batch 64, a fresh optimizer per phase, as the
trainer does between its phases); noise is the paper's fixed set of ``noise_examples``
Gaussian examples with random labels, data the first ``train_size`` MNIST training images
in the trainer's order (stream 0). ``trajectory_snapshots`` snapshots of ``W_2`` are taken
evenly in each phase (plus the initial weights).

A phase depends only on the state it starts from (its batches are keyed by the seed and
the step within the phase), so ``noise-only`` is exactly the first phase of
``noise->data`` and ``data-only`` that of ``data->noise``: each shared prefix is computed
once and its end state reused, which equals running the four orders on fresh chips.

Per seed, one PCA (:func:`neurosim.metrics.pca_trajectory`) is fitted to all distinct
snapshots (both two-phase orders), and ``vec(B_2^T)`` is projected as an extra point.
"""

from __future__ import annotations

import time

import numpy as np

from neurosim import evaluation, metrics, stats
from neurosim.chip import Chip
from neurosim.data import load_dataset
from neurosim.errors import DataError
from neurosim.plots import color, new_figure, save_png
from neurosim.report import markdown_table
from neurosim.reproduce.context import (NOT_RUN, Claim, Context, Section, band_figure,
                                        describe, directional_verdict, mean_std_text,
                                        save_rows, threshold_verdict)
from neurosim.reproduce.lab import BATCH, NOISE_LR, Lab, data_batches
from neurosim.runio import write_json

KEY = "fig2_trajectory"
TITLE = "Fig. 2 - weight trajectories by training order"

ORDERS: dict[str, tuple[str, ...]] = {
    "noise->data": ("noise", "data"),
    "data->noise": ("data", "noise"),
    "noise-only": ("noise",),
    "data-only": ("data",),
}
DATA_STREAM = 0  # the trainer's data order


def last_layer(chip: Chip) -> tuple[np.ndarray, np.ndarray]:
    """``(W_L, B_L^T)`` of the chip's last feedback array, both ``n_L x n_{L-1}``."""
    _, W, B = evaluation.feedback_targets(chip)[-1]
    return W, B.T


def snapshot(chip: Chip, phase: str, phase_index: int, phase_step: int, step: int) -> dict:
    W, BT = last_layer(chip)
    angle = metrics.alignment_angle(W, BT.T)
    return {"phase": phase, "phase_index": phase_index, "phase_step": phase_step,
            "step": step, "alignment_deg": angle,
            "cosine_to_BT": float(np.cos(np.radians(angle))), "w": W.reshape(-1)}


def snapshot_steps(steps: int, count: int) -> set[int]:
    """``count`` evenly spaced steps in ``1..steps`` (the end included)."""
    return {int(round(v)) for v in np.linspace(0, steps, count + 1)[1:]} - {0}


def run_phase(ctx: Context, lab: Lab, chip: Chip, seed: int, phase: str, phase_index: int,
              offset: int, noise, mnist) -> list[dict]:
    """One phase on ``chip``: ``trajectory_steps`` steps with a fresh optimizer, snapshots
    of ``W_2`` (the last also holds the test loss and accuracy on MNIST)."""
    s = ctx.settings
    optimizer = lab.optimizer(chip, NOISE_LR)
    wanted = snapshot_steps(s.trajectory_steps, s.trajectory_snapshots)
    if phase == "noise":
        batches = (noise.batch(step) for step in range(s.trajectory_steps))
    else:
        batches = data_batches(seed, DATA_STREAM, mnist.x_train, mnist.y_train,
                               s.trajectory_steps)
    records = []
    for step, (x, y) in enumerate(batches, start=1):
        lab.step(chip, optimizer, x, y)
        if step in wanted:
            records.append(snapshot(chip, phase, phase_index, step, offset + step))
    test = lab.evaluate(chip, mnist.x_test, mnist.y_test)
    records[-1].update(test_loss=test["loss"], test_accuracy=test["accuracy"])
    return records


def seed_orders(ctx: Context, lab: Lab, seed: int, mnist) -> dict:
    """The snapshots of every order of one seed (shared prefixes computed once)."""
    chip = lab.chip(seed)
    noise = lab.noise(seed, ctx.settings.noise_examples, chip)
    test = lab.evaluate(chip, mnist.x_test, mnist.y_test)
    start = {**snapshot(chip, "init", 0, 0, 0), "test_loss": test["loss"],
             "test_accuracy": test["accuracy"]}
    cache = {(): (chip.state(), [start])}
    for phases in ORDERS.values():
        for k in range(1, len(phases) + 1):
            if phases[:k] in cache:
                continue
            state, records = cache[phases[:k - 1]]
            chip.load_state(state)
            offset = (k - 1) * ctx.settings.trajectory_steps
            records = records + run_phase(ctx, lab, chip, seed, phases[k - 1], k, offset,
                                          noise, mnist)
            cache[phases[:k]] = (chip.state(), records)
    _, BT = last_layer(chip)
    orders = {name: cache[phases][1] for name, phases in ORDERS.items()}

    # one PCA of the distinct snapshots (the two-phase orders; the initial point once)
    distinct = [np.stack([r["w"] for r in orders["noise->data"]]),
                np.stack([r["w"] for r in orders["data->noise"][1:]])]
    pca = metrics.pca_trajectory(distinct, extra_points=BT.reshape(-1))
    bt = np.asarray(pca.extra_points, dtype=np.float64)
    for records in orders.values():
        for r in records:
            point = (r["w"] - pca.mean) @ pca.components.T
            r["pc1"], r["pc2"] = float(point[0]), float(point[1])
            r["distance_to_BT_pca"] = float(np.hypot(*(point - bt)))
    return {"seed": seed, "orders": orders, "bt": bt.tolist(),
            "explained_variance_ratio": pca.explained_variance_ratio.tolist()}


# --------------------------------------------------------------------------- figures
def trajectory_figure(path, result: dict):
    """The 2-D PCA trajectories of one seed with ``B^T`` marked."""
    fig, axes = new_figure(1, 1, width=6.6, height=5.4)
    ax = axes[0, 0]
    styles = {"noise-only": dict(linewidth=6, alpha=0.25), "data-only": dict(linewidth=6,
                                                                             alpha=0.25),
              "noise->data": dict(linewidth=1.4, marker="."),
              "data->noise": dict(linewidth=1.4, marker=".")}
    for index, (name, records) in enumerate(result["orders"].items()):
        x = [r["pc1"] for r in records]
        y = [r["pc2"] for r in records]
        ax.plot(x, y, color=color(index), label=name, **styles[name])
        ax.plot(x[-1], y[-1], marker="s", color=color(index), markersize=6)
        switch = [r for r in records if r["phase_index"] == 1][-1:]
        if len({r["phase_index"] for r in records}) > 2 and switch:
            ax.plot(switch[0]["pc1"], switch[0]["pc2"], marker="D", color=color(index),
                    markersize=5, markerfacecolor="white")
    first = result["orders"]["noise->data"][0]
    ax.plot(first["pc1"], first["pc2"], marker="o", color="black", markersize=7,
            label="initialization")
    ax.plot(*result["bt"], marker="*", color="crimson", markersize=16, linestyle="none",
            label=r"$B_2^T$")
    ratio = result["explained_variance_ratio"]
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f} % of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f} % of variance)")
    ax.set_title(f"Last-layer weights W2, seed {result['seed']} (square: end, diamond: "
                 "phase switch)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


# --------------------------------------------------------------------------- section
def not_run(section: Section, reason: str) -> Section:
    section.notes.append(reason)
    section.text = f"Not run: {reason}\n"
    for paper in CLAIMS:
        section.claims.append(Claim(paper, f"not run ({reason})", NOT_RUN))
    return section


CLAIMS = (
    "Random-noise pretraining aligns the forward weights with the feedback: after noise "
    "then data training the last layer is better aligned with B^T than after data training "
    "alone.",
    "Noise training after data training also moves the weights toward B^T (the alignment "
    "angle decreases during the noise phase).",
    "Noise-first weight trajectories head toward B^T.",
)


def weight_trajectories(ctx: Context) -> Section:
    start_time = time.perf_counter()
    s = ctx.settings
    section = Section(KEY, TITLE)
    folder = ctx.folder(KEY)
    try:
        mnist = load_dataset("mnist", ctx.data_dir, train_size=s.train_size,
                             test_size=s.test_size)
    except DataError as error:
        return not_run(section, f"MNIST could not be loaded: {error}")
    lab = Lab.of(ctx)
    results = [seed_orders(ctx, lab, seed, mnist) for seed in ctx.seeds]
    n = len(results)
    T = s.trajectory_steps

    # ---- per-seed quantities
    def end(result, order):
        return result["orders"][order][-1]

    def phase_end(result, order, phase_index):
        return [r for r in result["orders"][order] if r["phase_index"] == phase_index][-1]

    angle = {o: [end(r, o)["alignment_deg"] for r in results] for o in ORDERS}
    accuracy = {o: [end(r, o)["test_accuracy"] for r in results] for o in ORDERS}
    before_noise = [phase_end(r, "data->noise", 1)["alignment_deg"] for r in results]
    after_noise = angle["data->noise"]
    init_angle = [r["orders"]["noise-only"][0]["alignment_deg"] for r in results]
    dist_start = [r["orders"]["noise-only"][0]["distance_to_BT_pca"] for r in results]
    dist_end = [end(r, "noise-only")["distance_to_BT_pca"] for r in results]
    cos_start = [r["orders"]["noise-only"][0]["cosine_to_BT"] for r in results]
    cos_end = [end(r, "noise-only")["cosine_to_BT"] for r in results]
    heads = [de < ds and ce > cs for ds, de, cs, ce in zip(dist_start, dist_end, cos_start,
                                                            cos_end)]
    test_nd_vs_d = stats.paired_ttest(angle["noise->data"], angle["data-only"])
    test_dn = stats.paired_ttest(after_noise, before_noise)
    test_acc = stats.paired_ttest(accuracy["noise->data"], accuracy["data-only"])
    test_dist = stats.paired_ttest(dist_end, dist_start)
    test_cos = stats.paired_ttest(cos_end, cos_start)

    # ---- data files
    snapshot_rows, order_rows, pca_rows = [], [], []
    for r in results:
        pca_rows.append({"seed": r["seed"], "bt_pc1": r["bt"][0], "bt_pc2": r["bt"][1],
                         "explained_variance_pc1": r["explained_variance_ratio"][0],
                         "explained_variance_pc2": r["explained_variance_ratio"][1]})
        for order, records in r["orders"].items():
            snapshot_rows += [{"seed": r["seed"], "order": order,
                               **{k: v for k, v in rec.items() if k != "w"}}
                              for rec in records]
            last = records[-1]
            order_rows.append({"seed": r["seed"], "order": order, "steps": last["step"],
                               "alignment_deg": last["alignment_deg"],
                               "cosine_to_BT": last["cosine_to_BT"],
                               "distance_to_BT_pca": last["distance_to_BT_pca"],
                               "test_loss": last["test_loss"],
                               "test_accuracy": last["test_accuracy"]})
    files = [save_rows(folder / "trajectory.csv", snapshot_rows),
             save_rows(folder / "orders.csv", order_rows),
             save_rows(folder / "pca.csv", pca_rows)]
    tests = {"alignment_noise_data_vs_data_only": test_nd_vs_d,
             "alignment_data_noise_after_vs_before_noise": test_dn,
             "accuracy_noise_data_vs_data_only": test_acc,
             "noise_only_pca_distance_end_vs_start": test_dist,
             "noise_only_cosine_end_vs_start": test_cos}
    json_path = folder / "fig2_trajectory.json"
    write_json(json_path, {
        "settings": {"trajectory_steps": T, "trajectory_snapshots": s.trajectory_snapshots,
                     "noise_examples": s.noise_examples, "optimizer":
                     lab.optimizer_text(NOISE_LR), "batch_size": BATCH,
                     "train_size": s.train_size, "test_size": s.test_size, "chip": ctx.chip,
                     "backend": ctx.backend},
        "seeds": list(ctx.seeds), "orders": {k: list(v) for k, v in ORDERS.items()},
        "pca": pca_rows, "final": order_rows,
        "noise_first_heads_to_BT": [bool(h) for h in heads],
        "tests": {k: v.__dict__ for k, v in tests.items()}})
    files.append(json_path)

    # ---- figures
    first = results[0]
    curves = {o: [(np.array([rec["step"] for rec in r["orders"][o]]),
                   np.array([rec["alignment_deg"] for rec in r["orders"][o]]))
                  for r in results] for o in ORDERS}
    section.figures = [
        (f"Last-layer weight trajectories of seed {first['seed']} in the PCA plane of their "
         f"snapshots, B2^T projected (star); {T} steps per phase",
         trajectory_figure(folder / f"trajectory_seed{first['seed']}.png", first)),
        (f"Last-layer alignment angle W2 vs B2^T by training order, mean ± std over {n} "
         "seeds", band_figure(folder / "alignment_by_order.png", curves, "training step",
                               "alignment angle (deg)", "Alignment by training order",
                               hline=90.0)),
    ]

    # ---- text
    lines = [
        f"Chip `{ctx.chip}`, [784, 100, 10] FA, backend `{ctx.backend}`, seeds "
        f"{list(ctx.seeds)} (n = {n}). Four orders of phases from the same initialization "
        f"per seed, each phase {T} steps ({lab.optimizer_text(NOISE_LR)}, batch {BATCH}, a "
        f"fresh optimizer per phase): noise is a fixed set of {s.noise_examples} N(0, 1) "
        f"examples with uniform random labels, data the first {s.train_size or 'all'} MNIST "
        f"training images (test: {s.test_size or 'all'} images). {s.trajectory_snapshots} "
        f"snapshots of W2 per phase plus the initial weights; per seed one PCA of all "
        f"distinct snapshots with vec(B2^T) projected into its plane. noise-only and "
        f"data-only are the first phases of noise->data and data->noise (the same "
        f"computation, run once).",
        "",
    ]
    if lab.sgd:
        lines += ["This chip updates its weights in the array (stochastic mode), so every "
                  "phase uses plain SGD instead of Adam.", ""]
    rows = [[o, " -> ".join(p), str(len(p) * T),
             mean_std_text(angle[o], 2, "°"),
             mean_std_text([end(r, o)["distance_to_BT_pca"] for r in results]),
             mean_std_text(np.array(accuracy[o]) * 100, 2, " %")] for o, p in ORDERS.items()]
    lines += [f"End of each order (mean ± std over seeds; initial angle "
              f"{mean_std_text(init_angle, 2, '°')}):", "",
              markdown_table(["order", "phases", "steps", "alignment angle W2",
                              "PCA distance to B2^T", "MNIST test accuracy"], rows),
              f"- Alignment, noise->data vs data-only: {describe(test_nd_vs_d)} (mean "
              f"difference {test_nd_vs_d.mean_difference:+.2f}°).",
              f"- Alignment in data->noise, after vs before the noise phase: "
              f"{mean_std_text(after_noise, 2, '°')} vs {mean_std_text(before_noise, 2, '°')}, "
              f"{describe(test_dn)}.",
              f"- Test accuracy at the end of data training, noise->data vs data-only: "
              f"{mean_std_text(np.array(accuracy['noise->data']) * 100, 2, ' %')} vs "
              f"{mean_std_text(np.array(accuracy['data-only']) * 100, 2, ' %')}, "
              f"{describe(test_acc)}.",
              f"- Noise phase from the initialization (noise-only): PCA distance to B2^T "
              f"{mean_std_text(dist_start)} -> {mean_std_text(dist_end)} ({describe(test_dist)}); "
              f"cosine of W2 with B2^T {mean_std_text(cos_start)} -> {mean_std_text(cos_end)} "
              f"({describe(test_cos)}).", ""]
    rows = [[str(r["seed"]), f"{100 * r['explained_variance_ratio'][0]:.1f} % / "
             f"{100 * r['explained_variance_ratio'][1]:.1f} %",
             f"({r['bt'][0]:.3f}, {r['bt'][1]:.3f})", f"{ds:.3f} -> {de:.3f}",
             f"{cs:.3f} -> {ce:.3f}", "yes" if h else "no"]
            for r, ds, de, cs, ce, h in zip(results, dist_start, dist_end, cos_start, cos_end,
                                            heads)]
    lines += ["Per seed (noise phase from the initialization):", "",
              markdown_table(["seed", "variance PC1 / PC2", "B2^T in the PCA plane",
                              "PCA distance to B2^T", "cosine W2 vs B2^T",
                              "heads toward B2^T"], rows)]
    section.text = "\n".join(lines)

    # ---- claims
    section.claims = [
        Claim(CLAIMS[0],
              f"angle {mean_std_text(angle['noise->data'], 2, '°')} (noise->data) vs "
              f"{mean_std_text(angle['data-only'], 2, '°')} (data-only) "
              f"({describe(test_nd_vs_d)})",
              directional_verdict(test_nd_vs_d, expected_sign=-1)),
        Claim(CLAIMS[1],
              f"data->noise: angle {mean_std_text(before_noise, 2, '°')} before the noise "
              f"phase -> {mean_std_text(after_noise, 2, '°')} after ({describe(test_dn)})",
              directional_verdict(test_dn, expected_sign=-1)),
        Claim(CLAIMS[2],
              f"in {sum(heads)} of {n} seeds the noise phase both shortens the PCA-plane "
              f"distance to B2^T ({mean_std_text(dist_start)} -> {mean_std_text(dist_end)}) "
              f"and raises the cosine with B2^T ({mean_std_text(cos_start)} -> "
              f"{mean_std_text(cos_end)})",
              threshold_verdict(sum(heads), n)),
    ]
    section.files = files
    section.seconds = time.perf_counter() - start_time
    return section


run = weight_trajectories  # the suite's uniform entry point
