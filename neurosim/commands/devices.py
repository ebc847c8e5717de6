"""``neurosim devices list|show``: the chip presets and their devices' response curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurosim.commands.run import positive_int
from neurosim.config import (HW_CONFIG_DIR, DeviceConfig, load_chip, read_yaml,
                             resolve_chip_path)
from neurosim.device_curves import (drift_text, random_sign_walk, range_steps, response_curve,
                                    symmetry_points, zero_shifted_text)
from neurosim.energy import EnergyConfig, write_pulse_pj
from neurosim.errors import writing
from neurosim.plots import new_figure, save_png
from neurosim.report import markdown_table, write_csv


def register(subparsers) -> None:
    parser = subparsers.add_parser("devices", help="list chip presets; show device curves",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every preset in hw_configs/ with its key figures")
    listing.set_defaults(func=run_list)
    show = sub.add_parser("show", help="a preset's response curve (pulses -> weight) as PNG + CSV")
    show.add_argument("name", help="preset name or chip YAML path")
    show.add_argument("--out", type=Path, default=Path("device_curves"),
                      help="output folder (default: ./device_curves)")
    show.add_argument("--devices", type=positive_int, default=200,
                      help="devices in the population (default: 200)")
    show.add_argument("--pulses", type=positive_int,
                      help="up pulses, then as many down (default: levels)")
    show.add_argument("--random-pulses", type=positive_int,
                      help="pulses of the random-sign walk (default: 10 x the range's steps)")
    show.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="override a chip field by its dotted path, e.g. "
                           "forward.reference=symmetry_point (repeatable)")
    show.set_defaults(func=run_show)


def cycle_to_cycle(device: DeviceConfig) -> str:
    """A device's cycle-to-cycle noise per pulse: additive (% of the range) or relative
    (x the response)."""
    if device.write_noise > 0:
        return f"{100 * device.write_noise:g} % of range"
    return f"{device.dw_min_ctoc:g} x step" if device.dw_min_ctoc > 0 else "0"


WRITE_FIELDS = ("cell_conductance_us", "write_voltage_v", "write_time_ns", "write_voltage_ltd_v",
                "write_time_ltd_ns")


def write_pulses(energy: EnergyConfig) -> str:
    """The energy of one potentiation and one depression pulse, as the ledger charges them;
    marked where they are the defaults' (TaOx's pulse, not the preset technology's own)."""
    text = f"{write_pulse_pj(energy):.3g} / {write_pulse_pj(energy, up=False):.3g}"
    default = EnergyConfig()
    if all(getattr(energy, f) == getattr(default, f) for f in WRITE_FIELDS):
        text += " (TaOx default)"
    return text


D2D_FIELDS = (("dw_min_dtod", "step"), ("w_min_dtod", "w_min"), ("w_max_dtod", "w_max"),
              ("up_down_dtod", "up_down"), ("drift_nu_dtod", "ν"))


def on_off(path, device) -> str:
    """``g_max / g_min`` where the preset gives its conductances (else the defaults would
    show 10.0 as if it were the technology's)."""
    given = (read_yaml(path).get("forward") or {}).get("device") or {}
    if not {"g_min", "g_max"} <= set(given):
        return "–"
    return f"{device.g_max / device.g_min:.1f}"


def device_to_device(device) -> str:
    """Every device-to-device spread a preset draws (``0`` for none)."""
    spreads = [f"{label} {getattr(device, name):g}" for name, label in D2D_FIELDS
               if getattr(device, name)]
    return ", ".join(spreads) or "0"


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for path in sorted(HW_CONFIG_DIR.glob("*.yaml")):
        chip = load_chip(path)
        device, forward = chip.forward.device, chip.forward
        rows.append([chip.name, device.model, forward.update.mode,
                     "–" if device.model == "ideal" else str(range_steps(chip)),
                     f"{device.nonlinearity_ltp:g} / {device.nonlinearity_ltd:g}"
                     if device.model == "exp_step" else
                     f"γ {device.gamma_up:g} / {device.gamma_down:g}"
                     if device.model == "linear_step" else "–",
                     on_off(path, device),
                     cycle_to_cycle(device), device_to_device(device),
                     symmetry_points(chip).text(), drift_text(chip),
                     zero_shifted_text(chip), write_pulses(chip.energy), chip.source])
    print(markdown_table(["preset", "model", "update", "steps", "NL LTP/LTD", "on/off",
                          "c2c (per pulse)", "d2d (std)", "symmetry point",
                          "w after `steps` random-sign pulses", "the same, zero-shifted",
                          "write pulse up / down (pJ)", "source"],
                         rows))
    print("symmetry point: where an up and a down pulse of the nominal device cancel, and "
          "where updates of random sign drive the weights; random-sign pulses: mean ± std "
          "of 200 devices drawn as on a chip, started at w = 0 (`neurosim devices show` "
          "plots the walk); zero-shifted: each device read against a reference at its "
          "symmetry point (`forward.reference: symmetry_point`), with the nominal "
          "device's reference and the range of weights it leaves")
    return 0


def run_show(args: argparse.Namespace) -> int:
    chip = load_chip(resolve_chip_path(args.name), args.overrides)
    with writing(args.out):
        args.out.mkdir(parents=True, exist_ok=True)
    if chip.forward.pair.mode != "none":
        print(PAIR_NOTE)
    show_response(chip, args)
    show_random_sign_walk(chip, args)
    return 0


PAIR_NOTE = ("forward.pair: one_sided. The curves below are one device's; each weight is a "
             "pair of them moved by SET (up) pulses only, so random-sign updates raise both "
             "devices alike and the weight has no symmetry point to drift to; a pair near "
             "saturation is refreshed (neurosim.pair).")


def show_response(chip, args: argparse.Namespace) -> None:
    """The response curve: PNG, CSV and a table of every few pulses."""
    curve = response_curve(chip, args.devices, args.pulses)
    rows = [{"pulse": int(p), "direction": "up" if p <= curve.n_up else "down",
             "nominal_w": float(n), "mean_w": float(m), "std_w": float(s)}
            for p, n, m, s in zip(curve.pulse, curve.nominal, curve.mean, curve.std)]
    csv = write_csv(args.out / f"{chip.name}_response.csv", rows)
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.fill_between(curve.pulse, curve.mean - curve.std, curve.mean + curve.std, alpha=0.25,
                    label=f"population mean ± std ({curve.n_devices} devices)")
    ax.plot(curve.pulse, curve.mean, linewidth=1)
    ax.plot(curve.pulse, curve.nominal, color="black", linewidth=1.5, label="nominal device")
    ax.axvline(curve.n_up, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel(f"pulse number ({curve.n_up} up, then {curve.n_up} down)")
    ax.set_ylabel("normalized weight w")
    ax.set_title(f"{chip.name}: {chip.forward.device.model} response")
    ax.legend()
    png = save_png(fig, args.out / f"{chip.name}_response.png")
    stride = max(1, len(rows) // 16)
    print(markdown_table(["pulse", "direction", "nominal w", "mean w", "std w"],
                         [[str(r["pulse"]), r["direction"], f"{r['nominal_w']:+.4f}",
                           f"{r['mean_w']:+.4f}", f"{r['std_w']:.4f}"]
                          for r in rows[::stride]]))
    print(f"curve: {png}\ntable: {csv}")


def show_random_sign_walk(chip, args: argparse.Namespace) -> None:
    """Where random-sign pulses drive the weights: the symmetry points, and the population's
    mean ± std along a walk of ``--random-pulses`` pulses from ``w = 0`` (PNG, CSV)."""
    points = symmetry_points(chip)
    print(f"symmetry point of the nominal device: {points.text()}")
    if chip.forward.update.mode == "ideal":
        print("random-sign walk: none (ideally updated devices take no pulses)")
        return
    steps = range_steps(chip)
    walk = random_sign_walk(chip, args.devices, args.random_pulses or 10 * steps)
    csv = write_csv(args.out / f"{chip.name}_random_sign.csv",
                    [{"pulse": int(p), "mean_w": float(m), "std_w": float(s),
                      "p10_w": float(lo), "p90_w": float(hi)}
                     for p, m, s, lo, hi in zip(walk.pulse, walk.mean, walk.std, walk.p10,
                                                walk.p90)])
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.fill_between(walk.pulse, walk.p10, walk.p90, alpha=0.25,
                    label=f"10th-90th percentile ({walk.n_devices} devices)")
    ax.plot(walk.pulse, walk.mean, linewidth=1.5, label="mean")
    for k, w in enumerate(points.stable):
        ax.axhline(w, color="black", linestyle="--", linewidth=1,
                   label="stable symmetry point" if k == 0 else None)
    for k, w in enumerate(points.unstable):
        ax.axhline(w, color="0.5", linestyle=":", linewidth=1,
                   label="unstable symmetry point" if k == 0 else None)
    ax.axvline(min(steps, walk.pulse[-1]), color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel(f"random-sign pulses from w = {walk.start:g} "
                  f"(dotted: {steps}, the range's steps)")
    ax.set_ylabel("normalized weight w")
    ax.set_title(f"{chip.name}: drift under random-sign pulses")
    ax.legend()
    png = save_png(fig, args.out / f"{chip.name}_random_sign.png")
    print(f"after {walk.pulse[-1]} random-sign pulses: w = {walk.mean[-1] + 0.0:+.3f} ± "
          f"{walk.std[-1]:.3f}\nwalk: {png}\ntable: {csv}")
