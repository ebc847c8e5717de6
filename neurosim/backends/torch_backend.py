"""The torch backend: the :class:`Backend` interface in torch, on the CPU or a CUDA GPU.

It computes what :mod:`neurosim.backends.numpy_ref` (the specification) computes, with the
same operations in the same order and the chip's dtype:

* the forward pass, softmax cross-entropy and the rule's backward pass (BP's transposed
  read, FA/DFA feedback reads, regenerated feedback multiplied digitally), every array read
  through :mod:`neurosim.backends.torch_periphery`: equal to the reference to the rounding
  of the matrix products, of the sums along an axis (softmax's normalizer, the batch's
  loss, the bias gradients: torch's reductions add in another order than NumPy's) and of
  ``exp``/``log``/``tanh`` (torch's, not NumPy's), and bit for bit given NumPy's (checked
  over rules, optimizers, devices, update modes and peripheries, float32 and float64); the
  re-reads of iterative bound management are counted into the chips' :attr:`Chip.rereads`
  as the reference counts them (training step or measurement pass, forward or backward
  read, layer of the array read);
* the optimizer (SGD, momentum, Adam in PyTorch's form) and the ideal update: element-wise
  IEEE operations and a correctly rounded ``sqrt``, so bit-identical to the reference on
  the CPU and on CUDA;
* regenerated feedback, ``uniform``/``normal`` and every device update through
  :mod:`neurosim.backends.torch_rng` and :mod:`neurosim.backends.torch_devices` (the
  backend's ``device_kernels``): the same draws by index, so the same pulse counts; values
  bit-identical on the CPU, within a few ulp of the library functions on CUDA
  (:mod:`neurosim.backends.torch_math`).

**Memory.** The interface passes NumPy arrays, and the chip's buffers stay the single
source of truth. On the CPU every buffer is used in place through ``torch.from_numpy``
views (no copies but the input batch). On CUDA every call copies what it reads to the GPU
(the flat parameters, the feedback matrices, the batch, the optimizer's moments, the
device arrays of an update) and what it changes back: a ``[784, 100, 10]`` network moves
about 0.3 MB each way per call in float32 (plus, per layer, the per-device arrays of a
pulsed or stochastic update: 2.6 MB for the first layer) and waits for the GPU several
times per call (the loss and accuracy, the pulse counts, every round of a device update's
loops, the results). That is correct, and far from what a GPU can do for a single chip of
this size: on a GPU, simulate many chips at once (populations, below).

**Populations.** :meth:`TorchBackend.population_step` runs the training step of many chips
at once over a leading chip dimension (:mod:`neurosim.population`) with the state held on
the device between steps (:mod:`neurosim.backends.torch_population`): batched reads
through the periphery (each chip's own read-noise streams), the optimizer, the ideal or
pulsed or in-array update of all chips together, no copies of the state per step; the
steps' losses come back when a driver asks for them (:meth:`TorchBackend.step_values`),
so the GPU is not waited for after every step (but by iterative bound management, whose
every round waits to learn which tiles still saturate). On a GPU the optimizer, the ideal
update and the pulse counts of a population step are Triton kernels
(:mod:`neurosim.backends.torch_fused`, ``simulation.fused_update``), bit-identical to the
separate operations. This is the fast GPU path.

**Threads.** ``threads`` sets torch's intra-op threads (process-wide). torch's CPU matrix
products (MKL) and cuBLAS split work by thread count and GPU, so unlike the Numba backend
the results may change in the last bits with the thread count (``simulation.deterministic``
is a Numba setting). On a machine whose cores are busy with other work, fewer threads can be
much faster: each parallel region waits for all of its threads. A population's batched
products share the chips out between the threads, each chip's product on one thread, so a
population equals its chips' single-chip runs bit for bit when those run on one thread (the
tests' setting), at any thread count of the population; a single chip's products (batches of
one, :func:`torch_math.product`) on several threads can differ in the last bit, because MKL
splits a small float32 product's sum between threads (checked, 2 threads and 2 to 8 chips:
only the output layer's gradient ``delta^T h`` of ``[784, 100, 10]``, 10 x 100 summed over
16 to 256 samples, differed, by one ulp; float64 and the other products were the same).
Making a single chip's products independent of the thread count would take either one thread
for that product (torch's thread count is process-wide) or MKL's strict reproducibility mode
(an environment setting for the whole process, ``MKL_CBWR=COMPATIBLE,STRICT``, which also
changes the kernels that run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from neurosim.backends import torch_devices, torch_fused, torch_periphery, torch_rng
from neurosim.backends.base import Backend
from neurosim.backends.torch_math import divide, libm, product, store, upload
from neurosim.backends.torch_population import ResidentPopulation
from neurosim.chip import Chip
from neurosim.errors import NeurosimError
from neurosim.optimizers import OptimizerState
from neurosim.periphery import PeripheryConfig
from neurosim.rows import Rows
from neurosim.rules import RuleCode

DTYPES = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}
MEASURED_ROWS = 1 << 16  # inputs of a batched measurement call (of 784 floats: 200 MB)


def read(w: torch.Tensor, x: torch.Tensor, config: PeripheryConfig, key,
         tiles: tuple[int, int], rereads: np.ndarray, transposed: bool = False) -> torch.Tensor:
    """A read of array ``w`` (cut into ``tiles``: rows x cols of a tile) with inputs ``x``
    (``x @ w.T``; ``transposed``: ``x @ w``) through the periphery (a plain product when it
    is ideal). ``w`` and ``x`` may have a leading chip dimension, ``key`` then being the
    chips' keys (an int64 tensor). Re-reads of iterative bound management are added to
    ``rereads`` (a row of :attr:`Chip.rereads`; ``A x 3``, a row per chip, with a leading
    chip dimension)."""
    if config.is_ideal:
        return product(x, w) if transposed else product(x, w.mT)
    return torch_periphery.read_tensor(w, x, config,
                                       key if isinstance(key, torch.Tensor) else int(key),
                                       transposed, tiles, rereads)


def activation(a: torch.Tensor, code: int) -> torch.Tensor:
    """Hidden activation ``f``: ReLU (code 0) or tanh (code 1)."""
    return torch.clamp_min(a, 0) if code == 0 else torch.tanh(a)


def activation_derivative(a: torch.Tensor, h: torch.Tensor, code: int) -> torch.Tensor:
    """``f'(a)``: ReLU ``[a > 0]``; tanh ``1 - h^2``."""
    return (a > 0).to(a.dtype) if code == 0 else 1 - h * h


def direct_signal(rule_code: int, e: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """What a direct rule's feedback arrays read: ``e``, ``sign(e)`` or the one-hot target
    (:func:`neurosim.backends.numpy_ref.direct_signal`)."""
    if rule_code == RuleCode.SDFA:
        return torch.sign(e)
    return onehot if rule_code == RuleCode.DRTP else e


class TorchBackend(Backend):
    """The interface in torch on ``device`` (``"cpu"`` or ``"cuda"``); see the module
    docstring for what is exact and what each call copies."""

    name = "torch"

    def __init__(self, dtype: str = "float32", device: str = "cpu", threads: int | None = None,
                 fused_update: str = "auto"):
        super().__init__(dtype)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            build = ("a CPU-only build" if torch.version.cuda is None
                     else f"built for CUDA {torch.version.cuda}")
            raise NeurosimError(f"simulation.device = 'cuda': torch {torch.__version__} "
                                f"({build}) sees no CUDA GPU; use device 'cpu'")
        reason = torch_fused.unavailable(self.device, self.dtype)
        if fused_update == "on" and reason is not None:
            raise NeurosimError(f"simulation.fused_update = 'on': {reason}")
        # a population step's optimizer and array update as Triton kernels (torch_fused)
        self.fused_update = fused_update == "on" or (
            fused_update == "auto" and reason is None and self.device.type == "cuda")
        if threads is not None:
            torch.set_num_threads(threads)
        self.device_kernels = torch_devices.kernels(self.device)
        self._tables: dict = {}  # batch sources kept on the device (stack_batches)
        self._last_tables: dict = {}  # dtype -> the sources last asked for, their table
        self._keys: dict = {}
        self._last_rows: tuple | None = None

    # ------------------------------------------------------------------ helpers
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A chip or optimizer buffer on the device: a view on the CPU, a copy on CUDA."""
        return torch.as_tensor(array, device=self.device)

    def _output(self, array: np.ndarray) -> torch.Tensor:
        """Where to compute a result that goes into ``array`` (then :func:`store`)."""
        if self.device.type == "cpu":
            return torch.from_numpy(array)
        return torch.empty(array.shape, dtype=DTYPES[array.dtype], device=self.device)

    def _batch(self, chip: Chip, x: np.ndarray) -> torch.Tensor:
        """The inputs in the chip's dtype, copied (dataset arrays are read-only)."""
        return torch.tensor(np.asarray(x, dtype=chip.dtype), device=self.device)

    @staticmethod
    def _layer(chip: Chip, params: torch.Tensor, l: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of layer ``l``'s array weights ``w`` (n_out x n_in) and bias ``b``, of every
        chip when ``params`` has a leading chip dimension."""
        w_off, n_out, n_in, b_off = (int(v) for v in chip.layout[l])
        lead = params.shape[:-1]
        return (params[..., w_off:w_off + n_out * n_in].view(*lead, n_out, n_in),
                params[..., b_off:b_off + n_out])

    @staticmethod
    def _feedback(chip: Chip, feedback: torch.Tensor, index: int) -> torch.Tensor:
        offset, rows, cols = (int(v) for v in chip.feedback_layout[index])
        return feedback[..., offset:offset + rows * cols].view(*feedback.shape[:-1], rows, cols)

    # ----------------------------------------------------------- random numbers
    def uniform(self, key: int, n: int) -> np.ndarray:
        return torch_rng.uniform(key, n, self.device).cpu().numpy()

    def normal(self, key: int, n: int) -> np.ndarray:
        return torch_rng.normal(key, n, self.device).cpu().numpy()

    def scaled_draws(self, key, n, gaussian, scale, shift, dtype):
        """On the device: only the values in ``dtype`` come back (half the bytes of the
        float64 draws in float32, and no passes over them on the host)."""
        z = (torch_rng.normal if gaussian else torch_rng.uniform)(key, n, self.device)
        return z.mul_(float(scale)).add_(float(shift)).to(DTYPES[np.dtype(dtype)]).cpu().numpy()

    def regenerate_feedback(self, chip: Chip, out: np.ndarray) -> None:
        out_t = self._output(out)
        for spec in filter(None, chip.feedback_specs):
            offset = int(chip.feedback_layout[spec.layer, 0])
            if spec.distribution == "uniform":
                values = spec.scale * (2.0 * torch_rng.uniform(spec.key, spec.size, self.device)
                                       - 1.0)
            else:
                values = spec.scale * torch_rng.normal(spec.key, spec.size, self.device)
            out_t[offset:offset + spec.size] = values  # float64, rounded to the dtype
        store(out, out_t)

    # --------------------------------------------------------------- the network
    def _forward(self, chip: Chip, params: torch.Tensor, x: torch.Tensor, keys: np.ndarray,
                 alphas: list, rereads: np.ndarray) -> tuple[list, list]:
        """Pre-activations ``a_l`` and activations ``h_l`` (``h_0 = x``; ``h_L = a_L``).
        ``alphas[l]``: layer ``l``'s scale, a float, or ``M x 1 x 1`` with a leading chip
        dimension on ``params`` (``M x n_params``) and ``x`` (``M x batch x n_0``).
        ``rereads``: where the pass's re-reads are counted, :attr:`Chip.rereads` of the pass
        (``2 x n_layers x 3``), or ``M x 2 x n_layers x 3`` with a leading chip dimension."""
        pre, post = [], [x]
        for l in range(chip.n_layers):
            w, b = self._layer(chip, params, l)
            y = read(w, post[-1], chip.forward_periphery, keys[l, 0], chip.tiles,
                     rereads[..., 0, l, :])
            a = alphas[l] * y + b.unsqueeze(-2)
            pre.append(a)
            post.append(a if l == chip.n_layers - 1 else activation(a, chip.activation_code))
        return pre, post

    def logits(self, chip: Chip, x: np.ndarray) -> np.ndarray:
        pre, _ = self._forward(chip, self._tensor(chip.params), self._batch(chip, x),
                               chip.read_keys(training=False), self._scales(chip.alphas_typed),
                               chip.rereads[1])
        return pre[-1].cpu().numpy()

    def _scales(self, values: np.ndarray) -> list:
        """Per-layer scales (``alphas``, ``1 / alphas``) of one chip (``values``: per
        layer) as floats, or of a population (``M x n_layers``) as ``M x 1 x 1`` tensors."""
        if values.ndim == 1:
            return [float(v) for v in values]
        return list(torch.as_tensor(values, device=self.device).T[..., None, None])

    def _signals(self, chip: Chip, feedback: np.ndarray, x: np.ndarray, y: np.ndarray,
                 rule_code: int, training: bool) -> tuple[float, int, list, list]:
        """:meth:`local_signals` with tensors (see :meth:`NumpyBackend.local_signals`); the
        labels copied, as the inputs (a probe set's arrays are read-only)."""
        loss, correct, inputs, deltas = self._signal_tensors(
            chip, self._tensor(chip.params), self._tensor(feedback), self._batch(chip, x),
            torch.tensor(np.asarray(y, dtype=np.int64), device=self.device),
            chip.read_keys(training), self._scales(chip.alphas_typed), rule_code,
            chip.rereads[int(not training)])
        return float(loss), int(correct), inputs, deltas

    def _signal_tensors(self, chip: Chip, params: torch.Tensor, feedback: torch.Tensor,
                        x: torch.Tensor, y: torch.Tensor, keys: np.ndarray, alphas: list,
                        rule_code: int, rereads: np.ndarray) -> tuple:
        """Forward pass, loss and the rule's backward pass of one chip, or of every chip
        with a leading chip dimension (see :meth:`_forward`, also for ``rereads``): (summed
        loss, correct predictions) per chip as tensors, the layer inputs and the errors."""
        pre, post = self._forward(chip, params, x, keys, alphas, rereads)
        batch = x.shape[-2]
        labels = y.unsqueeze(-1)
        logits = pre[-1]
        shifted = logits - torch.amax(logits, dim=-1, keepdim=True)
        logp = shifted - torch.log(torch.sum(torch.exp(shifted), dim=-1, keepdim=True))
        loss = -torch.gather(logp, -1, labels).squeeze(-1).sum(dim=-1)
        correct = (torch.argmax(logits, dim=-1) == y).sum(dim=-1)
        onehot = torch.zeros_like(logits).scatter_(-1, labels, 1.0)
        # each sample's error through the reads, the batch mean's 1/batch after them (as
        # NumpyBackend.local_signals)
        e = torch.exp(logp) - onehot
        deltas = [e]
        for l in range(chip.n_layers - 1, 0, -1):
            delta = deltas[0]
            if rule_code == RuleCode.BP:  # weight transport: the forward array, transposed
                w, _ = self._layer(chip, params, l)
                signal = alphas[l] * read(w, delta, chip.forward_periphery, keys[l, 1],
                                          chip.tiles, rereads[..., 1, l, :], transposed=True)
            else:  # FA: B_l delta_l; direct rules: an output signal projected to layer l-1
                index, source = ((l, delta) if rule_code == RuleCode.FA
                                 else (l - 1, direct_signal(rule_code, e, onehot)))
                B = self._feedback(chip, feedback, index)
                if chip.feedback_kind == "regenerated":  # digital logic, exact
                    signal = product(source, B.mT)
                else:
                    signal = read(B, source, chip.feedback_periphery, keys[index, 2],
                                  chip.tiles, rereads[..., 1, index, :])
            deltas.insert(0, signal * activation_derivative(pre[l - 1], post[l],
                                                            chip.activation_code))
        return loss, correct, post[:-1], [divide(delta, batch) for delta in deltas]

    def local_signals(self, chip, feedback, x, y, rule_code, training=False):
        loss, correct, inputs, deltas = self._signals(chip, feedback, x, y, rule_code,
                                                      training)
        return (loss, correct, [h.cpu().numpy() for h in inputs],
                [delta.cpu().numpy() for delta in deltas])

    def gradients(self, chip, feedback, x, y, rule_code, out, training=False):
        loss, correct, inputs, deltas = self._signals(chip, feedback, x, y, rule_code,
                                                      training)
        out_t = self._output(out)
        self._gradient_tensors(chip, inputs, deltas, out_t)
        store(out, out_t)
        return loss, correct

    def _gradient_tensors(self, chip: Chip, inputs: list, deltas: list,
                          out: torch.Tensor) -> None:
        """``delta_l^T h_{l-1}`` and the bias sums into ``out`` (per chip with a leading
        chip dimension)."""
        for l, (h, delta) in enumerate(zip(inputs, deltas)):
            g, bias = self._layer(chip, out, l)
            product(delta.mT, h, out=g)
            torch.sum(delta, dim=-2, out=bias)

    # ------------------------------------------------------- optimizer and update
    def optimizer_step(self, state: OptimizerState, grads, out):
        """Element-wise, in the buffers' dtype, in :meth:`NumpyBackend.optimizer_step`'s
        order of operations (``sqrt`` rounded as NumPy's, :func:`torch_math.libm`)."""
        step_size, inverse_sqrt_c2 = state.adam_scalars()
        t = grads.dtype.type
        out_t = self._output(out)
        m, v = self._tensor(state.m), self._tensor(state.v)
        self._optimize(state.config, t, m, v, self._tensor(grads), out_t,
                       float(-t(step_size)), float(t(inverse_sqrt_c2)))
        store(state.m, m)
        store(state.v, v)
        store(out, out_t)
        state.step += 1

    @staticmethod
    def _optimize(cfg, t, m, v, g, out, minus_step_size, inverse_sqrt_c2) -> None:
        """The optimizer's arithmetic (Adam's step-dependent scalars as floats, or as
        ``M x 1`` tensors of per-chip values with a leading chip dimension)."""
        if cfg.name == "adam":
            m.mul_(float(t(cfg.beta1))).add_(g * float(t(1 - cfg.beta1)))
            v.mul_(float(t(cfg.beta2))).add_(g * float(t(1 - cfg.beta2)) * g)
            torch.div(m * minus_step_size,
                      libm("sqrt", v) * inverse_sqrt_c2 + float(t(cfg.eps)), out=out)
        elif cfg.momentum > 0:
            m.mul_(float(t(cfg.momentum))).add_(g)
            torch.mul(m, float(-t(cfg.lr)), out=out)
        else:
            torch.mul(g, float(-t(cfg.lr)), out=out)

    def apply_ideal_update(self, chip: Chip, deltas):
        params = self._tensor(chip.params)
        self._ideal_update(chip, params, self._tensor(deltas),
                           self._scales(chip.inverse_alphas_typed))
        store(chip.params, params)

    def _ideal_update(self, chip: Chip, params: torch.Tensor, deltas: torch.Tensor,
                      inverse_alphas: list) -> None:
        """``w <- clip(w + dW (1 / alpha), w_min, w_max)``, ``b <- b + db`` (per chip with a
        leading chip dimension; ``inverse_alphas`` as :meth:`_scales` gives them)."""
        for l in range(chip.n_layers):
            w, b = self._layer(chip, params, l)
            dw, db = self._layer(chip, deltas, l)
            torch.clamp(w + dw * inverse_alphas[l], float(chip.bounds_typed[l, 0]),
                        float(chip.bounds_typed[l, 1]), out=w)
            b.add_(db)

    def stack_batches(self, batches, dtype):
        """On the device: :class:`neurosim.rows.Rows` by :meth:`gather_rows`; other batches
        stacked on the host and uploaded."""
        if not all(isinstance(batch, Rows) for batch in batches):
            return torch.as_tensor(super().stack_batches(batches, dtype), device=self.device)
        return super().stack_batches(batches, dtype)

    def gather_rows(self, sources, index, dtype):
        """Gathered on the device from copies of the sources, uploaded once and kept (a
        dataset, each chip's fixed noise set), so a step moves only the row indices."""
        table, starts = self._table(sources, np.dtype(dtype))
        rows = self._rows(index, starts)
        return table.index_select(0, rows.reshape(-1)).view(*index.shape, *table.shape[1:])

    def _rows(self, index: np.ndarray, starts: np.ndarray | None) -> torch.Tensor:
        """``index`` (``A x batch``) shifted to where each chip's source starts in its table,
        on the device; the inputs' and the labels' batches share it, so the last one is
        kept and reused."""
        key = None if starts is None else starts.tobytes()
        last = self._last_rows
        if last is None or last[0] is not index or last[1] != key:
            rows = index if starts is None else index + starts[:, None]
            last = self._last_rows = (index, key, upload(rows, self.device))
        return last[2]

    def _table(self, arrays: list, dtype: np.dtype) -> tuple[torch.Tensor, np.ndarray | None]:
        """The distinct arrays of ``arrays`` (by memory: views of one dataset are one) in
        ``dtype``, concatenated on the device (uploaded once per set of arrays and kept),
        and where each of ``arrays`` starts in it (``None``: all at 0, one array). The
        last answer per dtype is kept: a population's steps hand over the same sources
        step after step."""
        last = self._last_tables.get(dtype)
        if last is not None and (last[0] is arrays or (
                len(last[0]) == len(arrays) and all(a is b for a, b in zip(arrays, last[0])))):
            return last[1]
        found = self._find_table(arrays, dtype)
        self._last_tables[dtype] = arrays, found
        return found

    def _find_table(self, arrays: list, dtype: np.dtype) -> tuple[torch.Tensor, np.ndarray | None]:
        """:meth:`_table` (not the last one asked for)."""
        if all(a is arrays[0] for a in arrays):  # one dataset object for every chip
            keys = [self._memory_key(arrays[0])]
        else:
            keys = [self._memory_key(a) for a in arrays]
        distinct = dict(zip(keys, arrays))
        key = (tuple(distinct), dtype.str)
        if key not in self._tables:
            parts = [torch.tensor(np.asarray(a, dtype=dtype), device=self.device)  # a copy
                     for a in distinct.values()]
            firsts = np.cumsum([0] + [len(part) for part in parts[:-1]])
            self._tables[key] = (list(distinct.values()),  # kept alive: their memory is the key
                                 parts[0] if len(parts) == 1 else torch.cat(parts),
                                 dict(zip(distinct, firsts)))
        _, table, first = self._tables[key]
        if len(distinct) == 1:
            return table, None
        return table, np.array([first[k] for k in keys], dtype=np.int64)

    def _memory_key(self, array: np.ndarray) -> tuple:
        """Where ``array``'s elements lie (address, shape, strides, dtype): one key for
        every view of the same rows. Remembered per array object (a run hands over the same
        dataset arrays at every step)."""
        known = self._keys.get(id(array))
        if known is not None and known[0] is array:
            return known[1]
        if len(self._keys) > 4096:  # sources come and go (new views): forget the old ones
            self._keys.clear()
        interface = array.__array_interface__
        key = (interface["data"][0], array.shape, interface["strides"], array.dtype.str)
        self._keys[id(array)] = (array, key)  # the reference keeps the id from being reused
        return key

    def population_read_keys(self, population, active: list[int], training: bool):
        """The read-noise keys of one pass of the chips ``active`` (:meth:`Chip.read_keys`,
        taken in their order) as ``keys[l, j]`` (layer ``l``, read ``j``): a tensor of one
        key per chip (int64 words) when reads are noisy, else the first chip's zeros
        (nothing is drawn; a training step's keys, which count nothing, then taken of the
        first chip alone)."""
        first = population.chips[0]
        if first.ideal_reads and training:
            return first.read_keys(training=True)
        keys = population.read_keys(active, training)
        if first.ideal_reads:
            return keys[0]
        return upload(keys.view(np.int64).transpose(1, 2, 0), self.device)

    @staticmethod
    @contextmanager
    def population_rereads(population, active: list[int], training: bool) -> Iterator[np.ndarray]:
        """Where one pass of the chips ``active`` counts its re-reads: a zeroed ``A x 2 x
        n_layers x 3`` array (chip ``active[k]``'s :attr:`Chip.rereads` of the pass in row
        ``k``), added at the end of the block to the chips' re-reads of a training step
        (``training``) or of a measurement pass (:attr:`Population.rereads`)."""
        counted = np.zeros((len(active), *population.rereads.shape[2:]), dtype=np.int64)
        yield counted
        np.add.at(population.rereads, (np.asarray(active, dtype=np.int64), int(not training)),
                  counted)

    @staticmethod
    def _measured_groups(members: list[int], rows: int) -> list[tuple[slice, list[int]]]:
        """``members`` in groups of at most ``MEASURED_ROWS`` inputs (``rows`` per chip),
        each with its slice of ``members``."""
        per_call = max(1, MEASURED_ROWS // max(1, rows))
        return [(slice(start, start + per_call), members[start:start + per_call])
                for start in range(0, len(members), per_call)]

    def _measured_params(self, population, group: list[int]) -> torch.Tensor:
        """The parameters of the chips ``group`` on the device: those it holds for a
        population being trained, else copied there."""
        if population.resident is not None:
            return population.resident.params.index_select(
                0, torch.as_tensor(group, dtype=torch.int64, device=self.device))
        return torch.as_tensor(population.params[group], device=self.device)

    def population_logits(self, population, members, inputs):
        """All chips of ``members`` in batched reads, ``MEASURED_ROWS`` inputs per call at
        most (a population on a GPU measures its test set in a few calls) on the
        parameters of :meth:`_measured_params`; an input shared by the chips copied once,
        :class:`Rows` gathered on the device (a training probe: rows of a dataset kept
        there). Equal to :meth:`logits` chip by chip to the rounding of the batched
        products."""
        chip = population.chips[0]
        shared = all(x is inputs[0] for x in inputs) and not isinstance(inputs[0], Rows)
        if shared:
            x_all = torch.as_tensor(np.asarray(inputs[0], dtype=chip.dtype), device=self.device)
        outputs = []
        for part, group in self._measured_groups(members, len(inputs[0])):
            x = (x_all.expand(len(group), *x_all.shape) if shared else
                 torch.as_tensor(self.stack_batches(inputs[part], chip.dtype),
                                 device=self.device))
            with self.population_rereads(population, group, training=False) as rereads:
                pre, _ = self._forward(chip, self._measured_params(population, group), x,
                                       self.population_read_keys(population, group,
                                                                 training=False),
                                       self._scales(population.alphas[group]), rereads)
            outputs.extend(pre[-1].cpu().numpy())
        return outputs

    def population_gradients(self, population, members, x, y, rule_code):
        """All chips of ``members`` in batched reads and products, as
        :meth:`population_logits` groups them, with the feedback each applies now
        (:meth:`Population.feedback`). Equal to :meth:`gradients` chip by chip to the
        rounding of the batched products."""
        chip = population.chips[0]
        feedback = population.feedback(self)
        out = []
        for part, group in self._measured_groups(members, len(x[0])):
            params = self._measured_params(population, group)
            with self.population_rereads(population, group, training=False) as rereads:
                _, _, inputs, deltas = self._signal_tensors(
                    chip, params, torch.as_tensor(feedback[group], device=self.device),
                    torch.as_tensor(self.stack_batches(x[part], chip.dtype),
                                    device=self.device),
                    torch.as_tensor(self.stack_batches(y[part], np.dtype(np.int64)),
                                    device=self.device),
                    self.population_read_keys(population, group, training=False),
                    self._scales(population.alphas[group]), rule_code, rereads)
            grads = torch.empty_like(params)
            self._gradient_tensors(chip, inputs, deltas, grads)
            out.append(grads.cpu().numpy())
        return np.concatenate(out)

    def launch_population_step(self, population, states, active, x, y):
        """Every chip at once: the population's state is held on the device between steps
        (:class:`neurosim.backends.torch_population.ResidentPopulation`: batched reads,
        the optimizer, the ideal, pulsed or in-array update of all chips together, a subset
        of the chips gathered and scattered back); ``x`` and ``y`` may already be tensors
        on the device. Equal to single-chip steps to the rounding of the batched
        products. Returns the chips' summed losses and correct counts as tensors on the
        device, not waited for. Chips holding differential pairs (:mod:`neurosim.pair`) step
        one by one (:meth:`Backend.launch_population_step`)."""
        if population.chips[0].pairs is not None:
            x, y = (v.cpu().numpy() if isinstance(v, torch.Tensor) else v for v in (x, y))
            losses, correct = super().launch_population_step(population, states, active, x, y)
            return torch.as_tensor(losses), torch.as_tensor(correct)
        population.moments(states)  # a new phase's optimizers: stacked anew, state released
        if population.resident is None:
            population.resident = ResidentPopulation(self, population, states)
        return population.resident.step(states, active, x, y)

    def step_values(self, launched):
        """The launched steps' losses and correct counts, copied back in one transfer each
        (the first waits for the device to finish them)."""
        if not launched:
            return []
        losses = torch.cat([loss for loss, _ in launched]).cpu().numpy()
        correct = torch.cat([hits for _, hits in launched]).cpu().numpy()
        values, start = [], 0
        for loss, _ in launched:
            stop = start + loss.shape[0]
            values.append((losses[start:stop], correct[start:stop]))
            start = stop
        return values
