"""Configuration: the chip (hardware), the simulation (how) and the experiment (what).

Three kinds of plain data, each parsed once into frozen dataclasses and validated by
:mod:`neurosim.schema`:

* :class:`ChipConfig`, from a YAML file in ``hw_configs/``: forward arrays, feedback arrays,
  tiles. What the hardware *is*.
* :class:`SimulationConfig`: backend, device, dtype, threads. How it is simulated.
* :class:`ExperimentConfig`, from ``experiments/*.yaml``: network, rule, optimizer,
  preconditioning, data, training schedule, evaluation, seeds and named conditions.

An experiment names its chip (a preset in ``hw_configs/`` or a path). Overrides
(``--set train.epochs=3``) and per-condition overrides use the same dotted paths and are
validated the same way as the file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neurosim.data.ood import SIDE as IMAGE_SIDE  # pixels per side of the 28x28 frame
from neurosim.data.registry import DATASET_NAMES, get_spec
from neurosim.energy import EnergyConfig
from neurosim.errors import ConfigError
from neurosim.periphery import PeripheryConfig
from neurosim.rng import MAX_SEED
from neurosim.rules import RULES as LEARNING_RULES
from neurosim.schema import build, set_dotted, spec, to_plain

HW_CONFIG_DIR = Path(__file__).resolve().parent.parent / "hw_configs"

RULES = tuple(LEARNING_RULES)
BACKENDS = ("numpy", "numba", "torch")
DEVICES = ("cpu", "cuda")
FUSED_UPDATES = ("auto", "on", "off")  # simulation.fused_update
NOISE_DISTRIBUTIONS = ("gaussian", "uniform", "binary", "correlated")
DATASET_CLASSES = 10


# --------------------------------------------------------------------------- chip
DEVICE_MODELS = ("ideal", "constant_step", "linear_step", "soft_bounds", "exp_step")
REFERENCES = ("none", "symmetry_point")
# Why a device model cannot hold a reference at its symmetry point (neurosim.reference);
# the models that can are the others.
NO_REFERENCE = {
    "ideal": "it is updated exactly, without pulses, so updates of zero mean do not drift it",
    "constant_step": "its up and down steps do not depend on the weight, so it has no "
                     "symmetry point inside its range (equal steps balance everywhere, unequal "
                     "ones only at a bound)",
    "linear_step": "its slopes gamma_up / gamma_down are chip-wide scalars, and a device read "
                   "against its own reference would need them per device"}
REFERENCE_MODELS = tuple(model for model in DEVICE_MODELS if model not in NO_REFERENCE)
PAIR_MODES = ("none", "one_sided")
UPDATE_MODES = ("ideal", "pulsed", "stochastic")
#: Most pulses per weight and update (pulsed) or per train (stochastic): generous (a
#: device's whole range is ``levels`` pulses, typically 100-1000), and far within int32.
MAX_PULSES = 2**16
#: Most conductance levels of a device or cell: a step of 2**-20 of the range is already far
#: below any reported device (tens to thousands of levels); more only stalls training.
MAX_LEVELS = 2**20


def refuse_unused(source: str, path: str, config, fields: tuple[str, ...], used: bool,
                  why: str) -> None:
    """Fields of ``config`` that its chosen model or mode does not use (``used`` false) must
    keep their defaults: a value set there would be silently ignored. ``why``: which
    choice uses them."""
    if used:
        return
    default = type(config)()
    for name in fields:
        value = getattr(config, name)
        if value != getattr(default, name):
            raise ConfigError(source, f"{path}.{name}" if path else name, value, why)


@dataclass(frozen=True)
class DeviceConfig:
    """A resistive device as a response to programming pulses (DESIGN §2).

    One pulse moves a device's normalized weight ``w`` by ``dw`` (up = potentiation):

    * ``ideal`` / ``constant_step``: ``dw = +-dw_min``;
    * ``linear_step``: ``dw_up = dw_min (1 - gamma_up w)``, ``dw_down = dw_min (1 + gamma_down w)``;
    * ``soft_bounds``: ``dw_up = dw_min (1 - w / w_max)``, ``dw_down = dw_min (1 - w / w_min)``;
    * ``exp_step`` (NeuroSim): ``G(P) = B (1 - exp(-P / A)) + G_min`` over ``P in [0, levels]``,
      separately for LTP and LTD, ``A`` from the nonlinearity labels.

    Then, for every model: up/down asymmetry ``dw_up *= 1 + up_down``, ``dw_down *= 1 -
    up_down``; cycle-to-cycle noise (xi ~ N(0, 1), redrawn per pulse), either relative to
    the pulse's response, ``dw *= 1 + dw_min_ctoc xi`` (aihwkit), or additive and
    independent of the state, ``dw += write_noise (w_max - w_min) xi`` (NeuroSim:
    ``sigmaCtoC`` of the conductance range per pulse); device-to-device spread (``*_dtod``, relative std, drawn once per device from the
    chip seed) of ``dw_min``, ``up_down``, ``w_min``, ``w_max``; clipping to each device's own
    bounds; stuck devices that ignore every pulse.

    Where this departs from its references:

    * ``up_down`` scales both directions, symmetrically. aihwkit's ``up_down`` shrinks one
      side only (``u > 0``: ``dw_down *= 1 - u``, ``dw_up`` unchanged; ``u < 0``: ``dw_up
      *= 1 + u``). An aihwkit device with ``u_a > 0`` and step ``dw_a`` is ``up_down =
      u_a / (2 - u_a)`` and ``dw_min = dw_a / (1 + up_down)`` here.
    * A device whose drawn ``dw_min`` is negative (``dw_min_dtod`` large) gets step 0: it
      never moves, though its pulses are counted. aihwkit takes the magnitude instead.
    * ``exp_step`` is NeuroSim's conductance-vs-pulse curve, not aihwkit's ``ExpStepDevice``
      (a step that depends exponentially on ``w``). Its device-to-device spread is that of
      ``dw_min`` along the pulse axis; NeuroSim instead spreads the nonlinearity label.
    * Drift scales the signed weight towards 0, as a differential pair whose two devices
      drift alike would, not the single-device conductance that ``g_min`` / ``g_max`` and
      ``exp_step`` map onto ``w``; its exponent does not depend on the programmed state
      (aihwkit's PCM model has ``nu`` grow with the conductance).
    """

    model: str = spec("ideal", choices=DEVICE_MODELS, doc="pulse response model")
    dw_min: float | None = spec(None, gt=0.0,
                                doc="nominal weight change per pulse (normalized units); "
                                    "default (w_max - w_min) / levels")
    dw_min_dtod: float = spec(0.0, ge=0.0, doc="device-to-device relative std of dw_min")
    dw_min_ctoc: float = spec(0.0, ge=0.0,
                              doc="cycle-to-cycle noise relative to each pulse's response: dw "
                                  "*= 1 + dw_min_ctoc xi (aihwkit's dw_min_std)")
    write_noise: float = spec(0.0, ge=0.0, le=1.0,
                              doc="cycle-to-cycle noise added to each pulse's response, std as "
                                  "a fraction of the range w_max - w_min, whatever the "
                                  "device's state (NeuroSim V3's sigmaCtoC: a write of n "
                                  "pulses spreads by write_noise sqrt(n) of the range)")
    up_down: float = spec(0.0, gt=-1.0, lt=1.0,
                          doc="asymmetry: dw_up scaled by (1 + up_down), dw_down by (1 - up_down)")
    up_down_dtod: float = spec(0.0, ge=0.0, doc="device-to-device std of up_down")
    w_min_dtod: float = spec(0.0, ge=0.0, doc="device-to-device relative std of w_min")
    w_max_dtod: float = spec(0.0, ge=0.0, doc="device-to-device relative std of w_max")
    gamma_up: float = spec(0.0, ge=0.0, doc="linear_step: state dependence of potentiation")
    gamma_down: float = spec(0.0, ge=0.0, doc="linear_step: state dependence of depression")
    nonlinearity_ltp: float = spec(0.0, ge=-9.0, le=9.0,
                                   doc="exp_step: NeuroSim nonlinearity label of potentiation "
                                       "(NeuroSim's table spans -9..9)")
    nonlinearity_ltd: float = spec(0.0, ge=-9.0, le=9.0,
                                   doc="exp_step: NeuroSim nonlinearity label of depression")
    levels: int = spec(128, ge=2, le=MAX_LEVELS,
                       doc="pulses from w_min to w_max (exp_step: P_max); sets the default "
                           "dw_min; 2 .. 2**20 (devices report tens to thousands)")
    stuck_at_min: float = spec(0.0, ge=0.0, le=1.0, doc="fraction of devices stuck at w_min")
    stuck_at_max: float = spec(0.0, ge=0.0, le=1.0, doc="fraction of devices stuck at w_max")
    stuck_at_initial: float = spec(0.0, ge=0.0, le=1.0,
                                   doc="fraction of devices stuck at their initial weight")
    g_min: float = spec(1.0, gt=0.0, doc="conductance at w_min (microsiemens)")
    g_max: float = spec(10.0, gt=0.0, doc="conductance at w_max (microsiemens)")
    drift_nu: float = spec(0.0, ge=0.0, le=1.0,
                           doc="power-law conductance drift exponent: a weight programmed at "
                               "t0 reads w (t / t0)^-nu at time t after programming (PCM "
                               "~0.05, Ielmini et al. 2007; aihwkit PCMLikeNoiseModel); "
                               "evaluated at evaluation.drift_times_s after training")
    drift_nu_dtod: float = spec(0.0, ge=0.0,
                                doc="device-to-device std of drift_nu (absolute; nu_i >= 0)")
    drift_t0_s: float = spec(20.0, gt=0.0,
                             doc="seconds after programming at which a weight reads exactly "
                                 "as programmed (aihwkit's t0 = 20 s); times are counted from "
                                 "programming, so aihwkit's t_inference (counted from t0) "
                                 "is t - t0 here")

    def check(self, source: str, path: str) -> None:
        if self.dw_min_ctoc > 0 and self.write_noise > 0:
            raise ConfigError(source, f"{path}.write_noise", self.write_noise,
                              "dw_min_ctoc (relative, aihwkit) and write_noise (additive, "
                              "NeuroSim) are two models of the same cycle-to-cycle noise: "
                              "set one of them, the other 0")
        stuck = self.stuck_at_min + self.stuck_at_max + self.stuck_at_initial
        if stuck > 1.0:
            raise ConfigError(source, f"{path}.stuck_at_min + stuck_at_max + stuck_at_initial",
                              stuck, "stuck fractions must add up to <= 1")
        if not self.g_max > self.g_min:
            raise ConfigError(source, f"{path}.g_max", self.g_max,
                              f"must be > {path}.g_min ({self.g_min})")
        refuse_unused(source, path, self, ("gamma_up", "gamma_down"),
                      self.model == "linear_step",
                      f"only model linear_step uses it (model is {self.model})")
        refuse_unused(source, path, self, ("nonlinearity_ltp", "nonlinearity_ltd"),
                      self.model == "exp_step",
                      f"only model exp_step uses it (model is {self.model})")


# What only a pulsed device model simulates (an ideal device keeps its defaults; it does
# drift, drift_* being evaluation-time reads).
PULSED_DEVICE_FIELDS = ("dw_min", "dw_min_dtod", "dw_min_ctoc", "write_noise", "up_down",
                        "up_down_dtod", "w_min_dtod", "w_max_dtod", "gamma_up", "gamma_down",
                        "nonlinearity_ltp", "nonlinearity_ltd", "stuck_at_min",
                        "stuck_at_max", "stuck_at_initial")


@dataclass(frozen=True)
class UpdateConfig:
    """How the forward arrays realize a digital update ``dW`` (DESIGN §2)."""

    mode: str = spec("ideal", choices=UPDATE_MODES,
                     doc="ideal: w += dW exactly, clipped; pulsed: per weight "
                         "n = stochastic_round(|dw| / dw_min) pulses (capped), one programming "
                         "event per batch; stochastic: per sample, Bernoulli pulse trains of "
                         "length bl on rows and columns, a pulse per coincidence (in-array "
                         "SGD, aihwkit style)")
    max_pulses: int = spec(31, ge=1, le=MAX_PULSES,
                           doc="pulsed: most pulses one weight gets per update (1 .. 65536; "
                               "a device's whole range is levels pulses, typically 100-1000)")
    bl: int = spec(31, ge=1, le=MAX_PULSES,
                   doc="stochastic: pulse-train length per sample (1 .. 65536; aihwkit's "
                       "default 31)")


@dataclass(frozen=True)
class PairConfig:
    """Two devices per weight (:mod:`neurosim.pair`): ``w = (G+ - G+_min) - (G- - G-_min)``
    in weight units, each device moved only by potentiation (SET) pulses, and a pair whose
    device nears saturation reset and reprogrammed (Burr et al., IEEE TED 2015; aihwkit's
    ``OneSidedUnitCell``)."""

    mode: str = spec("none", choices=PAIR_MODES,
                     doc="none: one device per weight; one_sided: a differential pair per "
                         "weight, an increase sent as SET pulses to G+, a decrease as SET "
                         "pulses to G- (the remedy for PCM, whose depression is an abrupt "
                         "RESET); every forward read reads both cells")
    refresh_every: int = spec(100, ge=0,
                              doc="programming events between refresh checks (0: never): "
                                  "a check reads every device of the forward arrays")
    refresh_threshold: float = spec(
        0.75, gt=0.0, le=1.0,
        doc="a pair is refreshed (both devices RESET, its weight reprogrammed by SET pulses "
            "on one of them) when either device is above this fraction of its range "
            "(aihwkit's refresh_upper_thres, 0.75)")


@dataclass(frozen=True)
class ForwardArrayConfig:
    """Forward crossbar arrays holding ``W_l = alpha_l * w`` with ``w in [w_min, w_max]``."""

    device: DeviceConfig = spec(factory=DeviceConfig, doc="device model of the forward arrays")
    update: UpdateConfig = spec(factory=UpdateConfig, doc="how updates are realized")
    periphery: PeripheryConfig = spec(
        factory=PeripheryConfig,
        doc="DAC, read noise and ADC of every read of the forward arrays: the forward pass "
            "(training and evaluation) and BP's transposed read (default: ideal reads)")
    w_min: float = spec(-1.0, doc="nominal lower bound of the normalized array weight")
    w_max: float = spec(1.0, doc="nominal upper bound of the normalized array weight")
    init_fill: float = spec(0.25, gt=0.0, le=1.0,
                            doc="fraction of the range max(|w_min|, w_max) that the largest "
                                "initial |w| of a layer occupies; fixes the digital scale "
                                "alpha_l = max|W_init| / (init_fill * max(|w_min|, w_max))")
    reference: str = spec(
        "none", choices=REFERENCES,
        doc="zero-shifting (Kim et al., 2020; aihwkit's subtract_symmetry_point): "
            "symmetry_point pairs every device with a reference device holding its symmetry "
            "point, and a weight reads as the device's minus its reference, so zero-mean "
            "updates drive weights to 0 instead of to the devices' symmetry point; every "
            "forward read also reads the reference cells (soft_bounds and exp_step devices)")
    reference_error: float = spec(
        0.0, ge=0.0, le=1.0,
        doc="std of the error with which each reference is programmed, as a fraction of the "
            "range w_max - w_min (drawn once per device); 0: every reference exact")
    pair: PairConfig = spec(factory=PairConfig,
                            doc="a differential pair of devices per weight, programmed "
                                "one-sidedly and refreshed (default: one device per weight)")

    def check(self, source: str, path: str) -> None:
        if not self.w_min < self.w_max:
            raise ConfigError(source, f"{path}.w_max", self.w_max,
                              f"must be > {path}.w_min ({self.w_min})")
        if not (self.w_min < 0.0 < self.w_max):  # name the bound on the wrong side of 0
            name, value = ("w_min", self.w_min) if self.w_min >= 0.0 else ("w_max", self.w_max)
            raise ConfigError(source, f"{path}.{name}", value,
                              "the range [w_min, w_max] must contain 0 (signed weights): "
                              "w_min < 0 < w_max")
        if self.update.mode != "ideal" and self.device.model == "ideal":
            raise ConfigError(source, f"{path}.update.mode", self.update.mode,
                              "pulsed updates need a device model other than ideal "
                              "(e.g. constant_step)")
        step = (self.w_max - self.w_min) / self.device.levels
        if (self.device.model == "exp_step" and self.device.dw_min is not None
                and abs(self.device.dw_min - step) > 1e-9 * step):
            raise ConfigError(source, f"{path}.device.dw_min", self.device.dw_min,
                              f"exp_step's pulse step is (w_max - w_min) / levels = {step:g}; "
                              "leave dw_min unset")
        refuse_unused(source, f"{path}.device", self.device, PULSED_DEVICE_FIELDS,
                      self.device.model != "ideal",
                      "an ideal device is updated exactly and draws nothing per device: "
                      "pulse responses, their noise and device-to-device spread, and stuck "
                      "devices need a device model such as constant_step, with "
                      "update.mode: pulsed or stochastic")
        if self.reference != "none" and self.device.model not in REFERENCE_MODELS:
            raise ConfigError(source, f"{path}.reference", self.reference,
                              f"a reference at the symmetry point needs device.model "
                              f"{' or '.join(REFERENCE_MODELS)} (model is "
                              f"{self.device.model}: {NO_REFERENCE[self.device.model]})")
        refuse_unused(source, path, self, ("reference_error",), self.reference != "none",
                      "only a reference array (reference: symmetry_point) uses it")
        self._check_pair(source, path)
        mode = self.update.mode
        refuse_unused(source, f"{path}.update", self.update, ("max_pulses",), mode == "pulsed",
                      f"only update.mode pulsed uses it (mode is {mode})")
        refuse_unused(source, f"{path}.update", self.update, ("bl",), mode == "stochastic",
                      f"only update.mode stochastic uses it (mode is {mode})")
        if self.update.mode == "ideal" and self.device.model != "ideal":
            raise ConfigError(source, f"{path}.device.model", self.device.model,
                              "a device model other than ideal is programmed by pulses: "
                              "set update.mode: pulsed (a batch's update as pulse counts) "
                              "or stochastic (in-array pulse trains)")


    def _check_pair(self, source: str, path: str) -> None:
        pair = self.pair
        refuse_unused(source, f"{path}.pair", pair, ("refresh_every", "refresh_threshold"),
                      pair.mode != "none", "only a differential pair (pair.mode: one_sided) "
                                           "uses it")
        if pair.mode == "none":
            return
        if self.update.mode != "pulsed":
            raise ConfigError(
                source, f"{path}.pair.mode", pair.mode,
                f"a one-sided pair is programmed by pulse counts: it needs update.mode pulsed "
                f"(mode is {self.update.mode}; in-array pulse trains would need each "
                f"coincidence routed to G+ or G- by its sign, which the stochastic kernels "
                f"do not do)")
        if self.reference != "none":
            raise ConfigError(source, f"{path}.reference", self.reference,
                              "a differential pair already reads each weight as the "
                              "difference of two devices: use pair or reference, not both")


@dataclass(frozen=True)
class FeedbackArrayConfig:
    """Fixed random feedback arrays ``B_l``: programmed once, never updated.

    ``stored``, ``sign`` and ``ternary`` arrays are crossbars programmed at construction:
    each cell gets ``B (1 + programming_error xi)`` (xi ~ N(0, 1), drawn once), snapped to
    ``levels`` conductance levels when given, and a fraction of cells is stuck at the lowest
    or highest level. ``regenerated`` feedback is digital and exact.
    """

    kind: str = spec("stored", choices=("stored", "regenerated", "sign", "ternary"),
                     doc="stored: a crossbar holding B; regenerated: B re-drawn from a PRNG "
                         "seed in digital logic on every use (no storage, costs RNG draws); "
                         "sign: +-c (one bit per cell); ternary: -c, 0, +c")
    distribution: str = spec("uniform", choices=("uniform", "gaussian"),
                             doc="distribution of the entries of B")
    gain: float = spec(1.0, gt=0.0, doc="B entries have std gain/sqrt(3 * fan) (uniform: "
                                        "U(-gain/sqrt(fan), gain/sqrt(fan))), fan = the "
                                        "matched forward layer's fan-in (FA) or n_L (DFA, SDFA, "
                                        "DRTP)")
    ternary_zero_fraction: float = spec(1.0 / 3.0, gt=0.0, lt=1.0,
                                        doc="ternary: fraction of cells set to 0 (those of "
                                            "smallest |B|)")
    programming_error: float = spec(0.0, ge=0.0,
                                    doc="relative std of the programmed value of each cell")
    levels: int | None = spec(None, ge=2, le=MAX_LEVELS,
                              doc="conductance levels of a cell over [-max|B|, max|B|], "
                                  "2 .. 2**20 (none: continuous)")
    stuck_at_min: float = spec(0.0, ge=0.0, le=1.0, doc="fraction of cells stuck at -max|B|")
    stuck_at_max: float = spec(0.0, ge=0.0, le=1.0, doc="fraction of cells stuck at +max|B|")
    periphery: PeripheryConfig = spec(
        factory=PeripheryConfig,
        doc="DAC, read noise and ADC of every read of a feedback crossbar (the error's "
            "projection delta @ B^T); default: ideal reads")
    drift_nu: float = spec(0.0, ge=0.0, le=1.0,
                           doc="power-law drift exponent of the programmed cells: a cell "
                               "programmed at t0 reads B (t / t0)^-nu at simulated time t "
                               "(PCM: ~0.05, aihwkit PCMLikeNoiseModel)")
    drift_nu_dtod: float = spec(0.0, ge=0.0,
                                doc="device-to-device std of drift_nu (absolute; nu_i >= 0)")
    drift_t0_s: float = spec(20.0, gt=0.0,
                             doc="seconds after programming at which the programmed value "
                                 "is read exactly (aihwkit's t0 = 20 s)")

    def check(self, source: str, path: str) -> None:
        if self.stuck_at_min + self.stuck_at_max > 1.0:
            raise ConfigError(source, f"{path}.stuck_at_min + stuck_at_max",
                              self.stuck_at_min + self.stuck_at_max,
                              "stuck fractions must add up to <= 1")
        hardware = (self.programming_error > 0 or self.levels is not None
                    or self.stuck_at_min > 0 or self.stuck_at_max > 0 or self.drift_nu > 0
                    or self.drift_nu_dtod > 0 or not self.periphery.is_ideal)
        if self.kind == "regenerated" and hardware:
            raise ConfigError(source, f"{path}.kind", self.kind,
                              "regenerated feedback is digital: programming_error, levels, "
                              "stuck cells, drift and a non-ideal periphery apply to stored, "
                              "sign and ternary arrays only")
        refuse_unused(source, path, self, ("ternary_zero_fraction",), self.kind == "ternary",
                      f"only kind ternary uses it (kind is {self.kind})")
        refuse_unused(source, path, self, ("levels",), self.kind != "sign",
                      "a sign array's cells are +-max|B|, its two end levels: levels applies "
                      "to stored and ternary arrays")


@dataclass(frozen=True)
class TileConfig:
    """Arrays are split into tiles of ``rows x cols`` cells. Each tile reads its block with
    its own DAC, read noise and ADC, and the row tiles' partial sums are added digitally
    (:mod:`neurosim.periphery`); the ledger charges the conversions and additions."""

    rows: int = spec(256, ge=1, doc="cells per tile column (inputs per tile): a forward "
                                    "read's inputs are cut into row tiles of this many, each "
                                    "digitizing its own partial sums")
    cols: int = spec(256, ge=1, doc="cells per tile row (outputs per tile): the outputs "
                                    "one tile's converters digitize (one managed ADC range "
                                    "per sample and tile)")


@dataclass(frozen=True)
class ChipConfig:
    """A chip description (``hw_configs/*.yaml``)."""

    name: str = spec(doc="preset name")
    description: str = spec("", doc="what the preset models")
    source: str = spec("", doc="where its parameter values come from")
    forward: ForwardArrayConfig = spec(factory=ForwardArrayConfig, doc="forward arrays")
    feedback: FeedbackArrayConfig = spec(factory=FeedbackArrayConfig, doc="feedback arrays")
    tiles: TileConfig = spec(factory=TileConfig, doc="tiling of the arrays")
    energy: EnergyConfig = spec(factory=EnergyConfig, doc="unit costs of the energy ledger")
    step_time_s: float = spec(1e-3, gt=0.0,
                              doc="simulated time of one training step (s): the clock that "
                                  "ages the feedback arrays (drift) during training")


# --------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimulationConfig:
    """How the chip is simulated; changes speed, never the model."""

    backend: str = spec("numba", choices=BACKENDS,
                        doc="arithmetic backend (torch needs pip install 'neurosim[torch]')")
    device: str = spec("cpu", choices=DEVICES,
                       doc="where the arithmetic runs: cpu, or cuda (a GPU; backend torch only)")
    dtype: str = spec("float32", choices=("float32", "float64"), doc="floating-point type")
    threads: int | None = spec(None, ge=1, le=1024,
                               doc="CPU threads: Numba and BLAS, or torch's intra-op threads, "
                                   "1 .. 1024 (default: all cores)")
    deterministic: bool = spec(True, doc="numba: results independent of the thread count "
                                         "(matrix products tiled and split by shape); false "
                                         "sends every product to the multithreaded BLAS "
                                         "(rounding depends on the thread count; slower "
                                         "for small layers, can pay for very large ones)")
    fused_update: str = spec("auto", choices=FUSED_UPDATES,
                             doc="torch: a population step's optimizer, ideal update and "
                                 "pulse counts as Triton kernels, bit-identical to the separate torch "
                                 "operations (auto: on a CUDA device where triton is "
                                 "installed; on: required; off: never)")

    def check(self, source: str, path: str) -> None:
        if self.device == "cuda" and self.backend != "torch":
            raise ConfigError(source, f"{path}.device", self.device,
                              f"needs backend torch (backend {self.backend} runs on the CPU)")
        if self.fused_update == "on" and self.backend != "torch":
            raise ConfigError(source, f"{path}.fused_update", self.fused_update,
                              f"needs backend torch (a Triton kernel; backend {self.backend} "
                              "has its own fused kernels)")


# --------------------------------------------------------------------- experiment
@dataclass(frozen=True)
class NetworkConfig:
    dims: tuple[int, ...] = spec((784, 100, 10), ge=1, le=2**20, min_len=2,
                                 doc="layer widths n_0 -> n_1 -> ... -> n_L, each 1 .. 2**20 "
                                     "(1,048,576)")
    activation: str = spec("relu", choices=("relu", "tanh"), doc="hidden activation")


@dataclass(frozen=True)
class OptimizerConfig:
    """Digital-periphery optimizer turning the rule's gradient into a desired dW."""

    name: str = spec("adam", choices=("sgd", "adam"), doc="sgd (hardware-native) or adam")
    lr: float = spec(1e-4, gt=0.0, le=1e3,
                     doc="learning rate eta, > 0 and <= 1000 (Adam 1e-4, SGD 1e-2 here)")
    beta1: float = spec(0.9, ge=0.0, lt=1.0, doc="Adam first-moment decay")
    beta2: float = spec(0.999, ge=0.0, lt=1.0, doc="Adam second-moment decay")
    eps: float = spec(1e-8, gt=0.0, doc="Adam denominator floor")
    momentum: float = spec(0.0, ge=0.0, lt=1.0, doc="SGD momentum")

    def check(self, source: str, path: str) -> None:
        refuse_unused(source, path, self, ("beta1", "beta2", "eps"), self.name == "adam",
                      f"only adam uses it (name is {self.name})")
        refuse_unused(source, path, self, ("momentum",), self.name == "sgd",
                      f"only sgd uses it (name is {self.name}; Adam's momentum is beta1)")


#: Widest correlation length of correlated noise, in pixels: beyond the 28x28 frame a field
#: is already nearly one value per image (and the smoothing kernel grows as 8 length scales).
MAX_LENGTH_SCALE = 64.0


@dataclass(frozen=True)
class NoiseInputConfig:
    """Distribution of the noise inputs x (:func:`neurosim.precondition.draw_noise_inputs`).

    * ``gaussian``: every pixel independent, ``N(mean, std^2)`` (the paper's);
    * ``uniform``: every pixel independent, ``U(low, high)``;
    * ``binary``: sparse spikes, every pixel independently ``high`` with probability
      ``rate``, else ``low``;
    * ``correlated``: a stationary Gaussian random field over each image's pixels (white
      noise smoothed by a Gaussian kernel of ``length_scale`` pixels, wrapped at the frame's
      edges), every pixel ``N(mean, std^2)``, pixels ``d`` apart along a row or column
      correlated by about ``exp(-d^2 / (4 length_scale^2))``, ``d`` counted around the
      wrapped frame (``min(d, H - d)``: within 0.02 for ``0.7 <= length_scale <= H / 8``;
      wider kernels wrap the frame and correlate more, up to one value per image);
      channels independent.
    """

    distribution: str = spec("gaussian", choices=NOISE_DISTRIBUTIONS,
                             doc="gaussian N(mean, std^2), uniform U(low, high), binary spikes "
                                 "(high at rate, else low) or correlated (a smooth gaussian "
                                 "field over the image, length_scale pixels)")
    mean: float = spec(0.0, doc="mean mu (gaussian, correlated)")
    std: float = spec(1.0, ge=0.0, doc="standard deviation sigma of each pixel (gaussian, "
                                       "correlated)")
    low: float = spec(0.0, doc="uniform lower bound; binary value off a spike")
    high: float = spec(1.0, doc="uniform upper bound; binary value of a spike")
    rate: float = spec(0.1, gt=0.0, le=1.0,
                       doc="binary: probability that a pixel spikes, in (0, 1]")
    length_scale: float = spec(2.0, gt=0.0, le=MAX_LENGTH_SCALE,
                               doc="correlated: standard deviation of the smoothing kernel, "
                                   f"in pixels, in (0, {MAX_LENGTH_SCALE:g}]")

    def check(self, source: str, path: str) -> None:
        if self.distribution in ("uniform", "binary") and not self.low < self.high:
            raise ConfigError(source, f"{path}.high", self.high, f"must be > {path}.low ({self.low})")
        for fields, users in ((("mean", "std"), ("gaussian", "correlated")),
                              (("low", "high"), ("uniform", "binary")),
                              (("rate",), ("binary",)), (("length_scale",), ("correlated",))):
            refuse_unused(source, path, self, fields, self.distribution in users,
                          f"only distribution {' or '.join(users)} uses it "
                          f"(distribution is {self.distribution})")

    def pixel_moments(self) -> tuple[float, float]:
        """Mean and standard deviation of one pixel: ``mean, std`` (gaussian, correlated);
        ``(low + high) / 2, (high - low) / sqrt(12)`` (uniform); ``low + rate (high - low),
        (high - low) sqrt(rate (1 - rate))`` (binary)."""
        if self.distribution == "uniform":
            return (self.low + self.high) / 2, (self.high - self.low) / math.sqrt(12.0)
        if self.distribution == "binary":
            span = self.high - self.low
            return (self.low + self.rate * span,
                    span * math.sqrt(self.rate * (1.0 - self.rate)))
        return self.mean, self.std

    def describe(self, number: str = "g") -> str:
        """The distribution in a few words, for reports: ``N(0, 1²)``, ``U(-1, 1)``,
        ``binary 0/1 at rate 0.1``, ``N(0, 1²) correlated over 2 px``; every number
        formatted with the format spec ``number`` (``.3g``: ``U(-1.73, 1.73)``)."""
        mean, std, low, high, rate, length_scale = (
            format(value, number) for value in (self.mean, self.std, self.low, self.high,
                                                 self.rate, self.length_scale))
        return {"gaussian": f"N({mean}, {std}²)",
                "uniform": f"U({low}, {high})",
                "binary": f"binary {low}/{high} at rate {rate}",
                "correlated": f"N({mean}, {std}²) correlated over "
                              f"{length_scale} px"}[self.distribution]


@dataclass(frozen=True)
class PreconditionConfig:
    """Noise preconditioning (the paper's Algorithm 1): random inputs, random labels."""

    enabled: bool = spec(False, doc="run the noise phase before data training")
    regime: str = spec("fixed_set", choices=("fixed_set", "fresh_stream"),
                       doc="fixed_set: N examples drawn once and reused every epoch; "
                           "fresh_stream: new noise every step")
    n_examples: int = spec(10000, ge=1, le=2**26,
                           doc="size N of the fixed noise set, 1 .. 2**26 (67,108,864)")
    steps: int = spec(10000, ge=0, doc="optimizer steps of the noise phase")
    batch_size: int = spec(64, ge=1, doc="noise mini-batch size")
    input: NoiseInputConfig = spec(factory=NoiseInputConfig, doc="noise input distribution")
    optimizer: OptimizerConfig | None = spec(
        None, doc="optimizer (null: the experiment's); fields it does not give are the "
                  "experiment optimizer's when it names the same optimizer (or none), that "
                  "optimizer's defaults when it names another")
    log_every: int = spec(100, ge=1, doc="steps between metric records")
    checkpoint_every: int = spec(1000, ge=1, doc="steps between checkpoints (rounded up to a "
                                                 "multiple of log_every)")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = spec("digits", choices=DATASET_NAMES, doc="training/test dataset")
    train_size: int | None = spec(None, ge=1, doc="use the first N training examples")
    test_size: int | None = spec(None, ge=1, doc="use the first N test examples")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = spec(5, ge=0, doc="epochs of data training")
    batch_size: int = spec(64, ge=1, doc="mini-batch size")
    checkpoint_every: int = spec(1, ge=1, doc="epochs between checkpoints (rounded up to a "
                                              "multiple of evaluation.every_epochs)")


@dataclass(frozen=True)
class EvaluationConfig:
    fractional_epochs: tuple[float, ...] = spec((0.02, 0.05, 0.1, 0.2, 0.5), gt=0.0, lt=1.0,
                                                doc="extra evaluation points within epoch 1")
    points_per_epoch: int = spec(1, ge=1,
                                 doc="evenly spaced evaluation points in every epoch, its end "
                                     "included (1: at epoch ends); more points resolve "
                                     "curves and the energy to target more finely")
    every_epochs: int = spec(1, ge=1,
                             doc="evaluate in every k-th epoch only (and in the last): long "
                                 "runs on small training sets (checkpoints are taken at "
                                 "evaluation points)")
    train_probe_size: int = spec(10000, ge=1, doc="training examples used for train loss "
                                                  "(all of them when there are fewer)")
    gradient_probe_size: int = spec(256, ge=1,
                                    doc="training examples used for the update-vs-BP-gradient "
                                        "angle (all of them when there are fewer)")
    noise_probe_size: int = spec(10000, ge=1,
                                 doc="noise examples used for the readout probability")
    ood: tuple[str, ...] = spec(("translate", "rotate", "scale"),
                                choices=("translate", "rotate", "scale") + DATASET_NAMES,
                                doc="out-of-distribution test sets evaluated after training: "
                                    "transforms of the test set, or other datasets")
    ood_during_training: bool = spec(False,
                                     doc="also evaluate the OOD sets at every evaluation point "
                                         "of data training (records gain ood_accuracy), e.g. "
                                         "to compare OOD accuracy at matched in-distribution "
                                         "accuracy")
    ood_shifts_px: tuple[float, ...] = spec((2.0, 4.0), ge=0.0, le=IMAGE_SIDE,
                                            doc="translations (right and down), pixels, "
                                                "0 .. 28 (the image side)")
    ood_rotations_deg: tuple[float, ...] = spec((15.0, 30.0, 45.0), doc="rotations, degrees")
    ood_scales: tuple[float, ...] = spec((0.7, 1.3), gt=0.0, doc="scale factors")
    energy_target: float = spec(0.9, gt=0.0, le=1.0,
                                doc="test accuracy at which the energy to target is taken "
                                    "(preconditioning + data training until it is first "
                                    "reached)")
    drift_times_s: tuple[float, ...] = spec(
        (), gt=0.0,
        doc="after training, test accuracy with the forward arrays read this many seconds "
            "after their last programming (power-law drift of the device model; e.g. "
            "[3600, 86400, 31536000] for an hour, a day, a year)")


@dataclass(frozen=True)
class PopulationConfig:
    """Chips simulated at once (a leading chip dimension, :mod:`neurosim.population`): the
    seeds of the conditions run as populations, each training step of all their chips one
    backend call (one per optimizer and batch size among them: chips in different phases).
    Each chip's run folder holds what a separate run with its seed writes."""

    seeds: tuple[int, ...] | None = spec(None, ge=0, le=MAX_SEED, min_len=1,
                                         doc="the chips' seeds (distinct; 0 .. 2**64 - 1)")
    size: int | None = spec(None, ge=1, doc="M chips with seeds first_seed .. first_seed + M "
                                            "- 1 (instead of seeds)")
    first_seed: int = spec(0, ge=0, le=MAX_SEED,
                           doc="seed of the first chip, with size (first_seed + size - 1 "
                               "<= 2**64 - 1)")
    across_conditions: bool = spec(
        True, doc="one population for all the conditions that share the chip, network, rule "
                  "and simulation (e.g. preconditioning choices, optimizers, schedules: "
                  "conditions x seeds chips at once); false: one population per condition")
    max_chips: int | None = spec(
        None, ge=1, doc="at most this many chips at once (larger populations are run in "
                        "parts, one after another): a GPU keeps each chip's state and fixed "
                        "noise set (31 MB at 10,000 x 784 float32) in its memory")

    def check(self, source: str, path: str) -> None:
        if (self.seeds is None) == (self.size is None):
            raise ConfigError(source, f"{path}.size", self.size,
                              "give the population either seeds or a size, not both")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(source, f"{path}.seeds", list(self.seeds), "must be distinct")
        if self.size is not None and self.first_seed + self.size - 1 > MAX_SEED:
            raise ConfigError(source, f"{path}.first_seed", self.first_seed,
                              f"the last seed, first_seed + size - 1, must be <= {MAX_SEED} "
                              f"(2**64 - 1): first_seed <= {MAX_SEED - self.size + 1}")
        if self.seeds is not None and self.first_seed != 0:
            raise ConfigError(source, f"{path}.first_seed", self.first_seed,
                              "goes with size, not with seeds")

    @property
    def all_seeds(self) -> tuple[int, ...]:
        if self.seeds is not None:
            return self.seeds
        return tuple(range(self.first_seed, self.first_seed + self.size))


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a chip, a network, a rule and a schedule, over seeds and conditions."""

    name: str = spec(doc="experiment name (the run folder's name)")
    chip: str = spec("ideal", doc="a preset in hw_configs/ or a path to a chip YAML")
    chip_set: dict = spec(
        factory=dict,
        doc="fields of the chip set over its file's, by dotted path or as nested mappings "
            "(e.g. {forward.reference: symmetry_point}): a variant of a chip without a copy "
            "of its file, validated as the file is; a condition's chip_set adds to the "
            "experiment's")
    network: NetworkConfig = spec(factory=NetworkConfig, doc="network shape")
    rule: str = spec("fa", choices=RULES, doc="learning rule: " + "; ".join(
        f"{name}, {rule.description}" for name, rule in LEARNING_RULES.items()))
    optimizer: OptimizerConfig = spec(factory=OptimizerConfig, doc="optimizer")
    precondition: PreconditionConfig = spec(factory=PreconditionConfig, doc="noise phase")
    data: DataConfig = spec(factory=DataConfig, doc="dataset")
    train: TrainConfig = spec(factory=TrainConfig, doc="data training schedule")
    evaluation: EvaluationConfig = spec(factory=EvaluationConfig, doc="evaluation")
    seed: int = spec(0, ge=0, le=MAX_SEED, doc="seed of a single run (0 .. 2**64 - 1)")
    seeds: tuple[int, ...] | None = spec(None, ge=0, le=MAX_SEED,
                                         doc="seeds to run (overrides seed; 0 .. 2**64 - 1)")
    population: PopulationConfig | None = spec(
        None, doc="run every condition's seeds as one population of chips simulated at once: "
                  "{seeds: [...]} or {size: M, first_seed: s} (replaces seeds)")
    simulation: SimulationConfig = spec(factory=SimulationConfig, doc="simulation")
    conditions: dict | None = spec(None, doc="named conditions: name -> dotted overrides")

    def check(self, source: str, path: str) -> None:
        dims = self.network.dims
        dataset = get_spec(self.data.dataset)
        if dims[0] != dataset.features:
            shape = "x".join(map(str, dataset.delivered_shape))
            raise ConfigError(source, "network.dims[0]", dims[0],
                              f"must equal the dataset's {dataset.features} input features "
                              f"({self.data.dataset} images are {shape})")
        if dims[-1] != DATASET_CLASSES:
            raise ConfigError(source, f"network.dims[{len(dims) - 1}]", dims[-1],
                              f"must equal the dataset's {DATASET_CLASSES} classes")
        self._check_sizes(source, dataset)
        for index, kind in enumerate(self.evaluation.ood):
            if kind in DATASET_NAMES and kind != dataset.name \
                    and get_spec(kind).features != dataset.features:
                raise ConfigError(source, f"evaluation.ood[{index}]", kind,
                                  f"an OOD dataset must have the network's {dataset.features} "
                                  f"input features ({self.data.dataset}'s); {kind} images have "
                                  f"{get_spec(kind).features}")
        if self.population is not None and self.seeds is not None:
            raise ConfigError(source, "seeds", list(self.seeds),
                              "a population gives the seeds (population.seeds or "
                              "population.size); drop seeds")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError(source, "seeds", list(self.seeds),
                              "must be distinct, at least one (each seed is a run folder)")
        check_folder_name(source, "name", self.name)
        for name, overrides in (self.conditions or {}).items():
            check_folder_name(source, "conditions", name, "a condition's name")
            if not isinstance(overrides, dict):
                raise ConfigError(source, f"conditions.{name}", overrides,
                                  "must be a mapping of dotted.key: value overrides")
            for key in overrides:
                if not isinstance(key, str):
                    raise ConfigError(source, f"conditions.{name}", key,
                                      "override keys must be dotted field names (text)")
                if key.split(".")[0] in CONDITION_FIXED:
                    raise ConfigError(source, f"conditions.{name}.{key}", overrides[key],
                                      "a condition cannot set "
                                      f"{', '.join(CONDITION_FIXED)}: they span conditions")

    def _check_sizes(self, source: str, dataset) -> None:
        """Data sizes the dataset (its published split sizes) and the noise set can give:
        the splits' prefixes, a training batch at most the training examples, a fixed noise
        set's batch at most its examples (a larger batch would silently be the whole set)."""
        for split, size, available in (("train", self.data.train_size, dataset.n_train),
                                       ("test", self.data.test_size, dataset.n_test)):
            if size is not None and size > available:
                raise ConfigError(source, f"data.{split}_size", size,
                                  f"must be in 1..{available} ({dataset.name} has {available} "
                                  f"{split} images) or null (all of them)")
        examples = self.data.train_size or dataset.n_train
        if self.train.batch_size > examples:
            raise ConfigError(source, "train.batch_size", self.train.batch_size,
                              f"must be in 1..{examples}, the training examples "
                              f"({'data.train_size' if self.data.train_size else dataset.name})")
        pre = self.precondition
        if pre.enabled and pre.regime == "fixed_set" and pre.batch_size > pre.n_examples:
            raise ConfigError(source, "precondition.batch_size", pre.batch_size,
                              f"must be in 1..{pre.n_examples}, the fixed noise set's "
                              "examples (precondition.n_examples)")


# What a condition may not override: the experiment's name, its runs and conditions.
CONDITION_FIXED = ("name", "conditions", "seed", "seeds", "population")


def check_folder_name(source: str, path: str, value, what: str = "the experiment's name") -> None:
    """``value`` names a folder of the results (an experiment, a condition): text, not
    empty, no path separator, not ``.`` or ``..``, no leading ``.`` (hidden files are the
    results' scratch files)."""
    if not isinstance(value, str) or not value.strip() or "/" in value or "\\" in value \
            or value.startswith("."):
        raise ConfigError(source, path, value,
                          f"{what} names a results folder: text without '/' or '\\', not "
                          "empty, not starting with '.' (quote names YAML reads as other "
                          "types, e.g. 'on', 'no', '1')")


# What the chips of one population may differ in beyond their seed (neurosim.population):
# fields that only shape what each chip draws when it is built (its devices, their
# references, its initial weights and scale, its feedback cells), its own clock, and what
# its own ledger books.
# A population step's backend calls read every other field from its first chip.
PER_CHIP_FIELDS = {
    "chip": ("name", "description", "source", "tiles", "energy", "step_time_s"),
    "forward": ("init_fill", "reference", "reference_error"),
    "forward.device": ("dw_min_dtod", "up_down", "up_down_dtod", "w_min_dtod", "w_max_dtod",
                       "stuck_at_min", "stuck_at_max", "stuck_at_initial", "g_min", "g_max",
                       "drift_nu", "drift_nu_dtod", "drift_t0_s"),
    "feedback": ("distribution", "gain", "ternary_zero_fraction", "programming_error",
                 "levels", "stuck_at_min", "stuck_at_max", "drift_nu", "drift_nu_dtod",
                 "drift_t0_s"),
}


def _with_defaults(config, names: tuple[str, ...]):
    """``config`` with the fields ``names`` at their defaults (text fields without one:
    empty)."""
    def default(item: dataclasses.Field):
        if item.default_factory is not dataclasses.MISSING:
            return item.default_factory()
        return "" if item.default is dataclasses.MISSING else item.default

    return dataclasses.replace(config, **{item.name: default(item)
                                          for item in dataclasses.fields(config)
                                          if item.name in names})


def shared_hardware(chip: ChipConfig) -> ChipConfig:
    """``chip`` with every :data:`PER_CHIP_FIELDS` field at its default: chips for which
    it is equal can be stepped as one population (e.g. presets that differ only in
    device-to-device variation, stuck cells or feedback programming)."""
    device = _with_defaults(chip.forward.device, PER_CHIP_FIELDS["forward.device"])
    forward = dataclasses.replace(_with_defaults(chip.forward, PER_CHIP_FIELDS["forward"]),
                                  device=device)
    return dataclasses.replace(_with_defaults(chip, PER_CHIP_FIELDS["chip"]), forward=forward,
                               feedback=_with_defaults(chip.feedback,
                                                       PER_CHIP_FIELDS["feedback"]))


@dataclass(frozen=True)
class RunSpec:
    """One resolved run: a condition of an experiment with one seed and its chip."""

    experiment: ExperimentConfig
    chip: ChipConfig
    condition: str
    seed: int

    @property
    def population_key(self) -> tuple:
        """What the runs of one population share (compared with ``==``): the chip (but for
        what each chip draws for itself, :func:`shared_hardware`), the network, the rule and
        the simulation, so that one backend call can step all their chips. Everything else
        may differ between them: seed, device variation, preconditioning, optimizer, data
        and schedule."""
        experiment = self.experiment
        return (shared_hardware(self.chip), experiment.network, experiment.rule,
                experiment.simulation)


# ------------------------------------------------------------------------ loading
class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a YAML document gives the same key twice (PyYAML would keep the last
    silently): ``path`` is the key's dotted path, ``line`` the 1-based line of the repeat,
    ``first_line`` that of the first."""

    def __init__(self, path: str, value: Any, line: int, first_line: int):
        self.path, self.value, self.line, self.first_line = path, value, line, first_line
        super().__init__(f"{path}: duplicate key on line {line} (first on line {first_line})")

    def config_error(self, source: str, prefix: str = "") -> ConfigError:
        path = f"{prefix}.{self.path}" if prefix and self.path else prefix or self.path
        return ConfigError(source, path, self.value,
                           f"duplicate key on line {self.line} (first given on line "
                           f"{self.first_line}); give each key once")


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing a key given twice in one mapping
    (:class:`DuplicateKeyError`), which ``yaml.safe_load`` would resolve silently to the
    last value. Every configuration file and ``--set`` value is read with it
    (:func:`load_yaml`)."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        self._check_duplicates(node, "", set())
        return self.construct_document(node)

    def _check_duplicates(self, node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already checked (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_duplicates(item, f"{path}[{index}]", seen)
        elif isinstance(node, yaml.MappingNode):
            first_lines = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor'
                    self._check_duplicates(value_node, path, seen)
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node)
                    dotted = f"{path}.{key}" if path else str(key)
                    line = key_node.start_mark.line + 1
                    if key in first_lines:
                        raise DuplicateKeyError(dotted, self._shown(value_node), line,
                                                first_lines[key])
                    first_lines[key] = line
                else:
                    dotted = f"{path}.{key_node.value!r}" if path else repr(key_node.value)
                self._check_duplicates(value_node, dotted, seen)

    def _shown(self, node: yaml.Node) -> Any:
        """The value of ``node`` for the message (its text where it cannot be built)."""
        try:
            return self.construct_object(node, deep=True)
        except yaml.YAMLError:
            return getattr(node, "value", None)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys (:class:`ConfigLoader`)."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), "(file)", str(path), f"cannot be read: {error.strerror}")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), "(file)", str(path),
                          f"is not UTF-8 text (byte {error.start}): not a YAML file") from None
    try:
        data = load_yaml(text)
    except DuplicateKeyError as error:
        raise error.config_error(str(path)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(str(path), where, "(yaml)", f"is not valid YAML: "
                          f"{getattr(error, 'problem', error)}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(top level)", data, "must be a mapping of fields")
    return data


def as_this_version(kind: type, data: Any, source: str) -> dict:
    """A saved config (``data``, a mapping from ``source``) as this version's schema reads
    it, in plain data: a field added since reads as its default and formatting is gone, so
    two saved configs compare by meaning. ConfigError when this version cannot read it."""
    return to_plain(build(kind, data, source))


def resolve_chip_path(name: str, relative_to: Path | None = None, field: str = "chip") -> Path:
    """A chip preset name (``ideal``) or a path: a bare name (no folder, no ``.yaml``) is
    a preset first; a path is taken relative to the experiment file ``relative_to``
    first, then to the current folder (or as it is, when absolute). An error names the
    field that gave it, ``field`` (``conditions.a.chip`` for a condition's)."""
    preset = HW_CONFIG_DIR / f"{name}.yaml"
    candidates = [Path(name)]
    if relative_to is not None:
        candidates.insert(0, relative_to.parent / name)
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        candidates.insert(0, preset)
    else:
        candidates.append(preset)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    presets = ", ".join(sorted(p.stem for p in HW_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(str(relative_to) if relative_to is not None else "chip argument",
                      field, name, f"must be a preset ({presets}) or a path to a chip YAML")


def load_chip(path: str | Path, overrides: list[str] = ()) -> ChipConfig:
    """Parse and validate a chip file with ``--set`` overrides applied."""
    data = apply_overrides(read_yaml(path), [parse_override(o) for o in overrides])
    return build(ChipConfig, data, f"{path}" + (" (with --set overrides)" if overrides else ""))


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.epochs=3'`` -> ``('train.epochs', 3)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError("--set", text, text, "must look like dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError("--set", text, text, "must look like dotted.key=value")
    try:
        value = load_yaml(raw)
    except DuplicateKeyError as error:
        raise error.config_error("--set", key) from None
    except yaml.YAMLError:
        value = raw
    return key, value


def section_overrides(base: dict, overrides: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """A condition's overrides as dotted keys: a mapping given for a section of ``base``
    (``train: {epochs: 2}``) sets those fields of it, the others keep their values, as
    ``train.epochs: 2`` would; any other value replaces the field."""
    flat = []
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        target = base
        for part in dotted.split("."):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(value, dict) and isinstance(target, dict) and value:
            flat.extend(section_overrides(base, value, f"{dotted}."))
        else:
            flat.append((dotted, value))
    return flat


def apply_overrides(data: dict, overrides: list[tuple[str, Any]], source: str = "--set",
                    prefix: str = "") -> dict:
    """A copy of ``data`` with the dotted ``overrides`` set; an error names ``source`` and
    the override's own path, ``prefix + key`` (:func:`~neurosim.schema.set_dotted`)."""
    data = copy.deepcopy(data)
    for key, value in overrides:
        set_dotted(data, key, value, source, prefix)
    return data


def check_condition_override(data: dict, key: str, value: Any, path: str | Path) -> None:
    """A ``--set`` override through a condition, ``conditions.<name>.<field>``, must name a
    condition that the experiment ``data`` (the file ``path`` with the overrides before
    this one) defines: :func:`~neurosim.schema.set_dotted` would create a misspelt one,
    which would then run as a condition of its own. A new condition is given whole,
    ``conditions.<name>={...}``."""
    parts = key.split(".")
    conditions = data.get("conditions")
    if (len(parts) < 3 or parts[0] != "conditions"
            or not isinstance(conditions, (dict, type(None)))):
        return  # not through a condition, or conditions is no mapping (set_dotted says so)
    name = parts[1]
    if name in (conditions or {}):
        return
    defined = (f"its conditions are {', '.join(map(str, conditions))}" if conditions
               else "it has no conditions")
    raise ConfigError("--set", key, value,
                      f"{path} has no condition {name} ({defined}); to add one, give it "
                      f"whole: --set 'conditions.{name}={{{'.'.join(parts[2:])}: ...}}'")


def noise_optimizer_completed(data: dict) -> dict:
    """Experiment ``data`` whose noise-phase optimizer, where it is a mapping, takes the
    fields it does not give from the experiment's optimizer, if it names the same one (or
    no name): ``precondition.optimizer: {lr: 1e-3}`` under SGD with momentum 0.9 is that
    SGD at lr 1e-3, not a default Adam. ``data`` itself is not changed."""
    pre = data.get("precondition")
    noise = pre.get("optimizer") if isinstance(pre, dict) else None
    if not isinstance(noise, dict):
        return data
    experiment = data.get("optimizer") if isinstance(data.get("optimizer"), dict) else {}
    name = experiment.get("name", OptimizerConfig().name)
    if noise.get("name", name) != name:
        return data
    return {**data, "precondition": {**pre, "optimizer": {**experiment, **noise}}}


def build_experiment(data: dict, source: str) -> ExperimentConfig:
    """An experiment from its plain ``data`` (a file with its overrides), validated; the
    noise phase's optimizer completed from the experiment's (:func:`noise_optimizer_completed`)."""
    return build(ExperimentConfig, noise_optimizer_completed(data), source)


def load_experiment(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Parse and validate an experiment file with ``--set`` overrides applied in order (one
    through a condition must name a condition defined by then:
    :func:`check_condition_override`)."""
    data = read_yaml(path)
    for key, value in (parse_override(o) for o in overrides):
        check_condition_override(data, key, value, path)
        set_dotted(data, key, value)
    source = f"{path}" + (" (with --set overrides)" if overrides else "")
    experiment = build_experiment(data, source)
    for run in expand_runs(experiment, Path(path)):
        pass  # every condition and its chip are validated here, before anything runs
    return experiment


def build_chip(path: Path, chip_set: dict, source: str) -> ChipConfig:
    """The chip file ``path`` with an experiment's ``chip_set`` (from ``source``) set over
    it. An error in a field ``chip_set`` sets names ``source`` and ``chip_set.<field>``;
    one elsewhere names the chip file."""
    data = read_yaml(path)
    if not chip_set:
        return build(ChipConfig, data, str(path))
    overrides = section_overrides(data, chip_set)
    where = f"{path} (with chip_set)"
    try:
        return build(ChipConfig, apply_overrides(data, overrides, source, "chip_set."), where)
    except ConfigError as error:
        if error.source != where or owning_override(error.path, dict(overrides)) is None:
            raise
        raise ConfigError(source, f"chip_set.{error.path}", error.value,
                          error.allowed) from None


def check_update_mode(experiment: ExperimentConfig, chip: ChipConfig, source: str) -> None:
    """In-array (stochastic) updates apply plain SGD: the array is the optimizer."""
    if chip.forward.update.mode != "stochastic":
        return
    for path, optimizer in (("optimizer", experiment.optimizer),
                            ("precondition.optimizer", experiment.precondition.optimizer)):
        if optimizer is not None and (optimizer.name != "sgd" or optimizer.momentum != 0):
            raise ConfigError(source, f"{path}.name", optimizer.name,
                              f"chip {chip.name} updates in the array (forward.update.mode: "
                              "stochastic), which is plain SGD: use sgd with momentum 0")


def owning_override(path: str, keys) -> str | None:
    """The override among the dotted ``keys`` that sets the field an error's ``path``
    names: that field or a section holding it (``train`` for ``train.epochs``,
    ``evaluation.ood`` for ``evaluation.ood[1]``); None when none does."""
    return next((key for key in keys
                 if path == key or path.startswith((f"{key}.", f"{key}["))), None)


def _resolve_condition(base: dict, name: str, overrides: dict, source: str,
                       path: Path | None) -> tuple[ExperimentConfig, ChipConfig]:
    """The experiment and chip of the condition ``name`` of the experiment ``base``. An
    error in a field the condition sets is named where the file sets it,
    ``conditions.<name>.<field>``; one in another field names the condition as its
    context, ``<file> (condition <name>): <field>``."""
    flat = section_overrides(base, overrides)
    keys = [key for key, _ in flat]
    twice = next((key for index, key in enumerate(keys) if key in keys[:index]), None)
    if twice is not None:
        raise ConfigError(source, f"conditions.{name}.{twice}",
                          [value for key, value in flat if key == twice],
                          "set twice in one condition (flat and nested spellings of the "
                          "same field): give it once")
    data = apply_overrides(base, flat, source, f"conditions.{name}.")
    # a run of a population is configured as a run alone
    data.update(conditions=None, seeds=None, population=None)
    where = f"{source} (condition {name})"
    try:
        resolved = build_experiment(data, where)
        chip = build_chip(resolve_chip_path(resolved.chip, path, f"conditions.{name}.chip"
                                            if "chip" in keys else "chip"),
                          resolved.chip_set, where)
        check_update_mode(resolved, chip, where)
    except ConfigError as error:
        if error.source != where or owning_override(error.path, keys) is None:
            raise
        raise ConfigError(source, f"conditions.{name}.{error.path}", error.value,
                          error.allowed) from None
    return resolved, chip


def expand_runs(experiment: ExperimentConfig, path: Path | None = None) -> list[RunSpec]:
    """The runs of an experiment: every condition times every seed (the population's, if
    any), each validated; a run's experiment has no seeds, population or conditions."""
    source = str(path) if path else experiment.name
    base = to_plain(experiment)
    conditions = experiment.conditions or {"default": {}}
    seeds = (experiment.population.all_seeds if experiment.population is not None
             else experiment.seeds if experiment.seeds is not None else (experiment.seed,))
    runs = []
    for name, overrides in conditions.items():
        resolved, chip = _resolve_condition(base, name, overrides, source, path)
        for seed in seeds:
            runs.append(RunSpec(dataclasses.replace(resolved, seed=seed), chip, name, seed))
    return runs
