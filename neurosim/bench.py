"""Training and inference throughput of the simulator (``neurosim bench``).

One run measures every combination of experiment configs x backends x chips x population
sizes side by side, as medians of interleaved repeats after warm-up (every repeat times each
combination once, so a change of machine load shifts all of them alike):

* a **workload** (:class:`Workload`) is ``M`` chips (seeds ``0 .. M-1``) of an experiment's
  network, rule, optimizer and dtype on one chip configuration and one backend, each chip
  with its own fixed random batches (cycled). Its **training** step is what a run does per
  batch: :meth:`Backend.train_step` for one chip (``neurosim run``), one
  :meth:`Backend.population_step` for a population (``population:``); its **inference**
  pass is the evaluation's forward pass of every chip on a batch of ``eval_batch`` inputs
  (:func:`neurosim.evaluation.logits` chip by chip; for a population, as a run's
  evaluation points make it, :func:`neurosim.evaluation.population_logits`);
* each call is timed in batches of calls lasting about ``repeat_seconds`` (the count
  calibrated once per workload after a warm-up call, which also compiles), the workloads
  of one backend one after another and a pause before the next backend's (thread pools
  spin for a while after their last call);
* **samples/s** is one chip's rate (batch x calls / seconds: how fast each run of a
  population advances), **chip-samples/s** that times ``M`` (the machine's throughput);
* **peak memory** (after the timings, each workload alone, built anew): what building
  it, one training step and one inference pass add at their peak to the process's
  resident memory (``peak_host_mib``, Linux: ``VmHWM`` reset through
  ``/proc/self/clear_refs``, the pages the allocator kept free handed back first with
  ``malloc_trim``; the benchmark's own random batches left out) and to torch's
  CUDA allocations (``peak_gpu_mib``: ``torch.cuda.max_memory_allocated``);
* **batches**: a population on a GPU is measured twice: ``device``, the batches handed over
  as rows of a dataset that the torch backend keeps on the GPU (only the row indices move:
  what ``neurosim run`` does with its data and fixed noise sets), and ``host``, stacked
  NumPy batches copied to the GPU in every step (what a fresh noise stream costs).

Backends: ``numpy``, ``numba``, ``torch-cpu``, ``torch-cuda``; one that cannot run here
(torch not installed, no CUDA GPU) is skipped with its reason. Chips: a preset of
``hw_configs/`` (``ideal``, ``rram_taox``...), a chip YAML file, or :data:`CONSTANT_STEP`
(the ideal chip with constant-step devices, 128 levels, programmed by pulsed updates).
Each backend runs with the BLAS threads it would have in a run (single-threaded BLAS for
the Numba backend's deterministic products, the default otherwise).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits

from neurosim.backends import create_backend
from neurosim.backends.base import Backend
from neurosim.chip import Chip
from neurosim.config import (FUSED_UPDATES, HW_CONFIG_DIR, ChipConfig, DeviceConfig,
                             ExperimentConfig, UpdateConfig, check_update_mode, load_chip,
                             load_experiment)
from neurosim.cores import available_cores
from neurosim.errors import NeurosimError
from neurosim.evaluation import logits, population_logits
from neurosim.optimizers import OptimizerState
from neurosim.population import Population
from neurosim.provenance import environment
from neurosim.rules import get_rule

BACKENDS = {"numpy": ("numpy", "cpu"), "numba": ("numba", "cpu"),
            "torch-cpu": ("torch", "cpu"), "torch-cuda": ("torch", "cuda")}
CONSTANT_STEP = "constant_step"
DEFAULT_CONFIG = HW_CONFIG_DIR.parent / "experiments" / "quickstart.yaml"
N_BATCHES = 4  # fixed random batches per chip, cycled
SETTLE_S = 0.3  # pause before timing another backend (its predecessor's threads spin down)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one ``neurosim bench`` run measures (see the module docstring)."""

    configs: tuple[Path, ...] = (DEFAULT_CONFIG,)
    backends: tuple[str, ...] = tuple(BACKENDS)
    chips: tuple[str, ...] = ("ideal", CONSTANT_STEP)
    populations: tuple[int, ...] = (1, 4, 16)
    repeats: int = 5
    batch: int | None = None  # None: each config's train.batch_size
    eval_batch: int = 1024
    repeat_seconds: float = 0.2
    fused_updates: tuple[str, ...] = ("auto",)  # torch's simulation.fused_update settings
    memory: bool = True  # each workload's peak memory, built again alone after the timings


QUICK = Settings(populations=(1, 4), repeats=3, eval_batch=256, repeat_seconds=0.05)


# ------------------------------------------------------------------- the machine
def machine() -> dict:
    """What the numbers were measured on: CPU model, cores, GPU (if torch sees one),
    neurosim's revision and the library versions (:func:`neurosim.provenance.environment`)
    and the date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": available_cores(), "gpu": None, **environment(),
            "numba_threads": numba.get_num_threads(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if info["torch"] is None:
        return info
    import torch

    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def time_calls(call: Callable[[], object], n: int, blas_threads: int | None = None,
               finish: Callable[[], object] | None = None) -> float:
    """Seconds per call of ``n`` calls of ``call`` and then ``finish()`` (waiting for what
    the calls launched), the BLAS limited to ``blas_threads`` threads meanwhile
    (``None``: as it is)."""
    if blas_threads is not None:
        with threadpool_limits(blas_threads, user_api="blas"):
            return time_calls(call, n, finish=finish)
    start = time.perf_counter()
    for _ in range(n):
        call()
    if finish is not None:
        finish()
    return (time.perf_counter() - start) / n


def _status_kib(field: str) -> int | None:
    """``field`` (``VmRSS``, ``VmHWM``) of ``/proc/self/status`` in KiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Set the process's peak resident memory (``VmHWM``) to its current one (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _release_freed_memory() -> None:
    """Hand the pages the C allocator keeps free back to the system (glibc's
    ``malloc_trim``), so that a later allocation reusing them counts in the resident
    memory again; nothing where there is no glibc."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(make: Callable[[], "Workload"], cuda: bool) -> dict:
    """What ``make()`` (a workload), one training step (waited for) and one inference pass
    add at their peak to the process's resident memory (MiB, less the workload's own random
    batches: the benchmark's, not the simulator's; None where the peak cannot be reset)
    and, with ``cuda``, to torch's CUDA allocations (MiB; None otherwise)."""
    gc.collect()
    _release_freed_memory()
    base_gpu = None
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base_gpu = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    host = _reset_peak_rss()
    base_rss = _status_kib("VmRSS")
    workload = make()
    workload.train()
    workload.wait()
    workload.infer()
    peak_rss = _status_kib("VmHWM")
    inputs = workload.x.nbytes + workload.y.nbytes + workload.eval_x.nbytes
    result = {"peak_host_mib": (max(0.0, ((peak_rss - base_rss) * 1024 - inputs) / 2**20)
                                if host and base_rss is not None and peak_rss is not None
                                else None),
              "peak_gpu_mib": None}
    if cuda:
        torch.cuda.synchronize()
        result["peak_gpu_mib"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    del workload
    gc.collect()
    return result


# --------------------------------------------------------------------- workloads
def constant_step_chip(ctoc: float = 0.0, mode: str = "pulsed") -> ChipConfig:
    """The ideal chip with ``constant_step`` devices (128 levels, cycle-to-cycle noise
    ``ctoc``) updated in ``mode`` (pulses capped at 31, BL 31)."""
    ideal = load_chip(HW_CONFIG_DIR / "ideal.yaml")
    forward = dataclasses.replace(
        ideal.forward, device=DeviceConfig(model="constant_step", levels=128, dw_min_ctoc=ctoc),
        update=UpdateConfig(mode=mode, max_pulses=31, bl=31))
    return dataclasses.replace(ideal, name=f"constant_step (c2c {ctoc:g})", forward=forward)


class Workload:
    """``population`` chips of ``experiment``'s network, rule, optimizer and dtype on
    ``chip_config`` and ``backend``; ``train()`` steps every chip once (one
    :meth:`Backend.population_step`, or with ``together=False`` or one chip
    :meth:`Backend.train_step` chip after chip), ``infer()`` runs every chip's forward pass
    on ``eval_batch`` inputs. ``data_on_device`` (populations): every step hands over the
    batches as :class:`neurosim.rows.Rows` of one dataset (:meth:`Backend.stack_batches`,
    which the torch backend gathers on its device from a copy kept there), as
    ``neurosim run`` hands over its data and fixed noise sets; otherwise as stacked NumPy
    arrays, copied to the device in the step (as drawn fresh-stream noise is)."""

    def __init__(self, experiment: ExperimentConfig, chip_config: ChipConfig, backend: Backend,
                 population: int, batch: int, eval_batch: int = 0, together: bool = True,
                 blas_threads: int | None = None, data_on_device: bool = False):
        dtype = experiment.simulation.dtype
        rule = get_rule(experiment.rule)
        self.backend, self.batch, self.eval_batch = backend, batch, eval_batch
        self.blas_threads = blas_threads
        self.chips = [Chip(chip_config, experiment.network, rule, seed, dtype)
                      for seed in range(population)]
        self.states = [OptimizerState.create(experiment.optimizer, chip.n_params, chip.dtype)
                       for chip in self.chips]
        n_in, n_out = self.chips[0].dims[0], self.chips[0].dims[-1]
        generator = np.random.default_rng(1)
        self.x = generator.random((N_BATCHES, population, batch, n_in)).astype(dtype)
        self.y = generator.integers(0, n_out, (N_BATCHES, population, batch))
        self.eval_x = generator.random((eval_batch, n_in)).astype(dtype)
        self.population = Population(self.chips) if together and population > 1 else None
        if self.population is not None:
            self.active = list(range(population))
            self.rows = None
            if data_on_device:  # batch k of chip c: rows (k M + c) batch ... of one dataset
                self.rows = np.arange(self.y.size).reshape(N_BATCHES, population, batch)
                self.dataset = (([self.x.reshape(-1, n_in)] * population, self.chips[0].dtype),
                                ([self.y.reshape(-1)] * population, np.dtype(np.int64)))
        else:
            self.grads = [np.zeros(chip.n_params, dtype=chip.dtype) for chip in self.chips]
            self.deltas = [np.zeros_like(g) for g in self.grads]
        self.count = 0
        self.launched: list = []  # population steps not waited for yet

    def train(self) -> None:
        x, y = self.x[self.count % N_BATCHES], self.y[self.count % N_BATCHES]
        self.count += 1
        if self.population is not None:
            if self.rows is not None:
                index = self.rows[(self.count - 1) % N_BATCHES]
                x, y = (self.backend.gather_rows(sources, index, dtype)
                        for sources, dtype in self.dataset)
            self.launched.append(self.backend.launch_population_step(
                self.population, self.states, self.active, x, y))
            return
        for c, chip in enumerate(self.chips):
            self.backend.train_step(chip, self.states[c], x[c], y[c], self.grads[c],
                                    self.deltas[c])

    def wait(self) -> None:
        """Wait for the population steps launched since the last wait (their losses)."""
        self.backend.step_values(self.launched)
        self.launched.clear()

    def infer(self) -> None:
        if self.population is not None:
            population_logits(self.population, self.backend, self.active,
                              [self.eval_x] * len(self.active))
            return
        for chip in self.chips:
            logits(chip, self.backend, self.eval_x)


def measure(calls: dict, repeats: int, repeat_seconds: float,
            settle_s: float = SETTLE_S) -> dict:
    """Median seconds per call of every ``(call, blas_threads, group, finish)`` of ``calls``
    (key ->; ``finish``: ``None``, or what waits for the calls' results, timed with them,
    :func:`time_calls`), timed in interleaved repeats after a warm-up call and a
    calibration of the calls per repeat. A batch of calls of another ``group`` than the
    batch before it waits ``settle_s`` first: the thread pools of the group before (BLAS,
    OpenMP) spin for a while after their last call and would steal the cores (give the
    calls of a backend one group and list them together)."""
    counts, last = {}, None
    for key, (call, threads, group, finish) in calls.items():
        if group != last:
            time.sleep(settle_s)
            last = group
        time_calls(call, 1, threads, finish)  # warm-up: compilation, caches, allocator
        once = time_calls(call, 1, threads, finish)
        counts[key] = max(1, math.ceil(repeat_seconds / max(once, 1e-9)))
    samples = {key: [] for key in calls}
    for _ in range(repeats):
        for key, (call, threads, group, finish) in calls.items():
            if group != last:
                time.sleep(settle_s)
                last = group
            samples[key].append(time_calls(call, counts[key], threads, finish))
    return {key: {"seconds": statistics.median(times), "calls_per_repeat": counts[key]}
            for key, times in samples.items()}


# ------------------------------------------------------------------- the command
def parse_list(option: str, text: str, allowed: str | None = None) -> tuple[str, ...]:
    """The comma-separated values of ``option`` (at least one)."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise NeurosimError(f"{option}: {text!r}: give at least one value"
                            + (f"; allowed: {allowed}" if allowed else ""))
    return values


def parse_positive(option: str, text: str, single: bool = False) -> tuple[int, ...]:
    """The comma-separated positive integers of ``option`` (exactly one if ``single``)."""
    allowed = "a positive integer" if single else "positive integers, e.g. 1,4,16"
    values = parse_list(option, text, allowed)
    try:
        numbers = tuple(int(v) for v in values)
    except ValueError:
        numbers = ()
    if len(numbers) != len(values) or min(numbers) < 1 or (single and len(numbers) > 1):
        raise NeurosimError(f"{option}: {text!r}: allowed: {allowed}")
    return numbers


def parse_seconds(option: str, text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or not math.isfinite(value):
        raise NeurosimError(f"{option}: {text!r}: allowed: a positive number of seconds")
    return value


def _presets() -> list[str]:
    return sorted(p.stem for p in HW_CONFIG_DIR.glob("*.yaml"))


def check_settings(settings: Settings) -> None:
    """Refuse unknown backends and chips and missing configs (one line naming the option
    and what is allowed)."""
    for name in settings.backends:
        if name not in BACKENDS:
            raise NeurosimError(f"--backends: {name!r} is not a backend; allowed: "
                                f"{', '.join(BACKENDS)}")
    for value in settings.fused_updates:
        if value not in FUSED_UPDATES:
            raise NeurosimError(f"--fused-update: {value!r} is not a setting; allowed: "
                                f"{', '.join(FUSED_UPDATES)}")
    for name in settings.chips:
        if name != CONSTANT_STEP and name not in _presets() and not Path(name).is_file():
            raise NeurosimError(f"--chips: {name!r} is not a chip; allowed: a preset "
                                f"({', '.join(_presets())}), {CONSTANT_STEP}, or a chip YAML "
                                f"file")
    for path in settings.configs:
        if not Path(path).is_file():
            raise NeurosimError(f"--configs: {str(path)!r} does not exist; allowed: experiment "
                                f"YAML files, e.g. {DEFAULT_CONFIG}")
    for option, value in (("--repeats", settings.repeats), ("--batch", settings.batch),
                          ("--eval-batch", settings.eval_batch)):
        if value is not None and value < 1:
            raise NeurosimError(f"{option}: {value}: allowed: a positive integer")
    if not settings.repeat_seconds > 0:
        raise NeurosimError(f"--seconds: {settings.repeat_seconds}: allowed: a positive "
                            f"number of seconds")
    if min(settings.populations) < 1:
        raise NeurosimError(f"--populations: {settings.populations}: allowed: positive "
                            f"integers, e.g. 1,4,16")


def _chip_config(name: str) -> ChipConfig:
    if name == CONSTANT_STEP:
        return constant_step_chip()
    return load_chip(Path(name) if Path(name).is_file() else HW_CONFIG_DIR / f"{name}.yaml")


def _shown(path: str | Path) -> str:
    """``path`` relative to the working folder where it lies below it (results name no
    machine's folders)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here (None: it can): torch not installed, or no
    CUDA GPU for ``torch-cuda``."""
    kind, device = BACKENDS[name]
    if kind != "torch":
        return None
    try:
        import torch
    except ImportError:
        return "needs torch, which is not installed: pip install 'neurosim[torch]'"
    if device == "cuda" and not torch.cuda.is_available():
        return f"CUDA is not available (torch {torch.__version__} sees no CUDA GPU)"
    return None


def _blas_threads(backend: Backend, default: int | None) -> int | None:
    """The BLAS threads ``backend`` runs with in a run: one for the Numba backend's
    deterministic products (it sets the limit when created), the process default else."""
    if backend.name == "numba":
        return 1 if backend.max_parts > 1 else numba.get_num_threads()
    return default


def _backends(experiment: ExperimentConfig, names: list[str], settings: Settings,
              skipped: list[dict], say: Callable[[str], None]):
    """``(name, fused, backend)`` for each backend of ``names`` in ``experiment``'s
    simulation settings, torch's once per ``settings.fused_updates`` (``fused``: whether
    its population steps use the fused kernel; None for the other backends, which have
    their own fused loops). A setting that cannot run here (``on`` without Triton and a
    GPU) is added to ``skipped``; settings that come to the same kernels are measured
    once."""
    for name in names:
        kind, device = BACKENDS[name]
        seen = set()
        for setting in settings.fused_updates if kind == "torch" else ("auto",):
            simulation = dataclasses.replace(experiment.simulation, backend=kind,
                                             device=device, fused_update=setting)
            try:
                backend = create_backend(simulation)
            except NeurosimError as error:
                if setting != "on":
                    raise
                item = {"backend": f"{name} (fused update)", "reason": str(error)}
                if item not in skipped:  # once, not once per config and chip
                    skipped.append(item)
                    say(f"skipped {name} with the fused update: {error}")
                continue
            fused = backend.fused_update if kind == "torch" else None
            if fused not in seen:
                seen.add(fused)
                yield name, fused, backend


def run_bench(settings: Settings, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every combination of ``settings``; returns the result (rows, skipped
    backends, the machine and the settings) that :func:`write_results` writes."""
    check_settings(settings)
    say = progress or (lambda text: None)
    blas = ThreadpoolController().select(user_api="blas").info()
    default_blas = max((lib["num_threads"] for lib in blas), default=None)
    skipped = [{"backend": name, "reason": why} for name in settings.backends
               if (why := unavailable(name)) is not None]
    backends = [name for name in settings.backends
                if name not in {item["backend"] for item in skipped}]
    for item in skipped:
        say(f"skipped {item['backend']}: {item['reason']}")
    workloads, combos = {}, []
    for path in settings.configs:
        experiment = load_experiment(path)
        batch = settings.batch or experiment.train.batch_size
        for chip_name in settings.chips:
            chip_config = _chip_config(chip_name)
            check_update_mode(experiment, chip_config, f"{path} with chip {chip_name}")
            for backend_name, fused, backend in _backends(experiment, backends, settings,
                                                          skipped, say):
                threads = _blas_threads(backend, default_blas)
                for size in settings.populations:
                    # GPU populations: also with the batches already on the device
                    places = (("host", "device") if BACKENDS[backend_name][1] == "cuda"
                              and size > 1 else ("host",))
                    for data in places:
                        # one chip's steps are train_step's, never the population kernel's
                        key = (str(path), chip_name, backend_name, fused and size > 1,
                               size, data)
                        if key in workloads:
                            continue
                        make = functools.partial(
                            Workload, experiment, chip_config, backend, size, batch,
                            settings.eval_batch, blas_threads=threads,
                            data_on_device=data == "device")
                        workloads[key] = make()
                        combos.append((key, experiment.name, experiment, batch, make))
    if not workloads:  # every backend setting skipped: an empty table is no result
        raise NeurosimError("nothing to measure: every combination was skipped ("
                            + "; ".join(f"{item['backend']}: {item['reason']}"
                                        for item in skipped)
                            + "); allowed: --backends and --fused-update settings that "
                              "run here")
    say(f"measuring {len(workloads)} combinations x (training, inference), "
        f"{settings.repeats} interleaved repeats")
    load_before = os.getloadavg()[0]
    order = sorted(workloads, key=lambda key: backends.index(key[2]))  # by backend
    calls = {(key, what): (getattr(workloads[key], what), workloads[key].blas_threads, key[2],
                           workloads[key].wait if what == "train" else None)
             for key in order for what in ("train", "infer")}
    timings = measure(calls, settings.repeats, settings.repeat_seconds)
    del calls
    workloads.clear()  # the memory pass builds each workload alone
    if settings.memory:
        say("measuring peak memory, each combination alone")
    memory = {key: (peak_memory(make, BACKENDS[key[2]][1] == "cuda") if settings.memory
                    else {"peak_host_mib": None, "peak_gpu_mib": None})
              for key, _, _, _, make in combos}
    rows = []
    for key, name, experiment, batch, make in combos:
        path, chip_name, backend_name, fused, size, data = key
        train, infer = timings[key, "train"], timings[key, "infer"]
        row = {"config": name, "config_file": _shown(path), "chip": chip_name,
               "backend": backend_name, "population": size, "batches": data,
               "fused_update": fused,
               "network": list(experiment.network.dims), "rule": experiment.rule,
               "optimizer": experiment.optimizer.name, "dtype": experiment.simulation.dtype,
               "batch": batch, "eval_batch": settings.eval_batch,
               "train_step_ms": train["seconds"] * 1e3,
               "train_samples_per_s": batch / train["seconds"],
               "train_chip_samples_per_s": size * batch / train["seconds"],
               "infer_ms": infer["seconds"] * 1e3,
               "infer_samples_per_s": settings.eval_batch / infer["seconds"],
               "infer_chip_samples_per_s": size * settings.eval_batch / infer["seconds"],
               "blas_threads": make.keywords["blas_threads"],
               **memory[key],
               "train_calls_per_repeat": train["calls_per_repeat"],
               "infer_calls_per_repeat": infer["calls_per_repeat"]}
        rows.append(row)
        say(f"{name} {chip_name} {backend_name}{' fused' if fused else ''} x{size} "
            f"(batches on the {data}): train "
            f"{row['train_chip_samples_per_s']:,.0f} chip-samples/s, inference "
            f"{row['infer_chip_samples_per_s']:,.0f} chip-samples/s")
    settings_plain = {**dataclasses.asdict(settings),
                      "configs": [_shown(path) for path in settings.configs]}
    return {"benchmark": "neurosim bench: training and inference throughput",
            "machine": machine(), "settings": settings_plain, "rows": rows,
            "skipped": skipped,
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    gpu = f", GPU {m['gpu']} (CUDA {m.get('cuda')})" if m["gpu"] else ", no GPU"
    torch_threads = (f" ({m['torch_threads']} threads)" if m.get("torch_threads") is not None
                     else "")
    blas = ", ".join(f"{name} {threads}" for name, threads in sorted(
        {(r["backend"], r.get("blas_threads")) for r in result["rows"]},
        key=lambda item: list(BACKENDS).index(item[0]))) or "none measured"
    lines = [f"# {result['benchmark']}", "",
             f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores{gpu}); Python "
             f"{m['python']}, neurosim {m['neurosim']} (revision {m.get('revision') or 'unknown'}), "
             f"numpy {m['numpy']}, numba {m['numba']} ({m['numba_threads']} threads), torch "
             f"{m['torch']}{torch_threads}; BLAS threads {blas}. 1-minute load "
             f"average {result['load_average_1min']['before']:.2f} before, "
             f"{result['load_average_1min']['after']:.2f} after. Medians of {s['repeats']} "
             f"interleaved repeats of about {s['repeat_seconds']} s each, after warm-up.", "",
             "samples/s: one chip's rate (how fast each run of a population advances); "
             "chip-samples/s: that times the population size (the machine's throughput). "
             "Training: one step of every chip (`Backend.train_step` for one chip, "
             "`Backend.population_step` for a population) on `batch` samples each; "
             f"inference: every chip's forward pass on {s['eval_batch']} inputs.", "",
             "batches: how a population step gets its batches (`device`: row indices into a "
             "dataset the torch backend keeps on the GPU, as `neurosim run` hands over its "
             "data and fixed noise sets; `host`: stacked NumPy arrays copied to the device in "
             "the step, as drawn fresh-stream noise is).", "",
             "peak memory: what building the workload (its chips' state), one training "
             "step and one inference pass add at their peak, each workload measured alone "
             "after the timings: host, the process's resident memory (less the benchmark's "
             "own random batches); GPU, torch's CUDA allocations.", "",
             "fused: whether a torch population step's optimizer and array update (ideal "
             "update, pulse counts) run as Triton kernels (`simulation.fused_update`; "
             "bit-identical to the separate operations).", "",
             "| config | chip | backend | fused | chips | batches | batch | train step (ms) "
             "| train samples/s | train chip-samples/s | inference samples/s "
             "| inference chip-samples/s | peak host MiB | peak GPU MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        fused = {True: "yes", False: "no"}.get(r.get("fused_update"), "")
        lines.append(f"| {r['config']} | {r['chip']} | {r['backend']} | {fused} "
                     f"| {r['population']} "
                     f"| {r['batches']} | {r['batch']} | {r['train_step_ms']:.2f} "
                     f"| {r['train_samples_per_s']:,.0f} | {r['train_chip_samples_per_s']:,.0f} "
                     f"| {r['infer_samples_per_s']:,.0f} "
                     f"| {r['infer_chip_samples_per_s']:,.0f} "
                     f"| {_mib(r.get('peak_host_mib'))} | {_mib(r.get('peak_gpu_mib'))} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{item['backend']} ({item['reason']})"
                                              for item in result["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def write_results(result: dict, out: Path, stem: str = "bench") -> Path:
    """``<out>/<stem>.json`` and ``<out>/<stem>.md``; returns the markdown's path."""
    from neurosim.runio import to_json, write_text

    out = Path(out)
    write_text(out / f"{stem}.json", to_json(result) + "\n")
    write_text(out / f"{stem}.md", markdown(result))
    return out / f"{stem}.md"
