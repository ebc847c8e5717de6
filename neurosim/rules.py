"""Learning rules: what error signal each hidden layer receives (DESIGN §3).

With ``a_l = W_l h_{l-1} + b_l``, ``h_l = f(a_l)`` and ``e = softmax(a_L) - y``:

* ``bp``  (reference): ``delta_L = e``; ``delta_l = (W_{l+1}^T delta_{l+1}) * f'(a_l)``.
  Reads the forward array transposed: **weight transport**.
* ``fa``  (Lillicrap et al. 2016): ``delta_l = (B_{l+1} delta_{l+1}) * f'(a_l)``,
  ``B_{l+1}`` of shape ``n_l x n_{l+1}``.
* ``dfa`` (Nøkland 2016): ``delta_l = (B_l e) * f'(a_l)``, ``B_l`` of shape ``n_l x n_L``.
* ``sdfa`` (sign DFA; Frenkel, Lefebvre & Bol 2021): ``delta_l = (B_l sign(e)) * f'(a_l)``.
  Only the error's sign reaches the feedback arrays: a ternary input in {-1, 0, 1}. With a
  softmax output it is ``+1`` on every wrong class however sure the chip is, so
  ``B_l sign(e) = B_l 1 - 2 B_l y`` carries a term ``B_l 1`` that never shrinks.
* ``drtp`` (direct random target projection; Frenkel, Lefebvre & Bol 2021):
  ``delta_l = (B_l y) * f'(a_l)``, ``y`` the one-hot target. The target is a proxy for the
  error's sign (``e_c < 0`` for the true class ``c``, ``e_j > 0`` otherwise; the fixed
  random ``B_l`` absorbs the overall sign), so a hidden layer learns from the label alone:
  no error reaches it, and it can update as soon as its own forward read is done (no update
  locking). The input to ``B_l`` is binary.

``dfa``, ``sdfa`` and ``drtp`` are the *direct* rules: one ``n_l x n_L`` array per hidden
layer projects an ``n_L``-wide signal of the output straight to it. The output layer of
every rule learns from ``e``. SDFA's ternary and DRTP's binary inputs pass exactly through
any DAC whose grid holds -1, 0 and 1: a managed one of any resolution, or a fixed one with
``dac_range: 1``, where 2 bits suffice (``feedback.periphery.dac_bits: 2`` in the chip
YAML, and the ledger then charges 2-bit conversions instead of the default 8).

Every rule then asks for ``dW_l = -eta * mean_batch(delta_l h_{l-1}^T)`` (or the step an
optimizer derives from that gradient). The arithmetic lives in the backends; this module
says which feedback arrays a rule needs and what they look like.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class RuleCode(IntEnum):
    """Integer codes of the rules, as passed to compiled kernels."""

    BP = 0
    FA = 1
    DFA = 2
    SDFA = 3
    DRTP = 4


DIRECT_CODES = frozenset((RuleCode.DFA, RuleCode.SDFA, RuleCode.DRTP))


@dataclass(frozen=True)
class Rule:
    name: str
    code: RuleCode
    weight_transport: bool
    description: str
    direct_input: str = ""  # a direct rule's: what its n_l x n_L arrays read
    # The feedback the rule's signal stands in for is feedback_sign * B: DRTP's ``B y``
    # replaces ``B (-e)`` (the target has the sign of ``-e`` on the true class), so the
    # forward weights align with ``-B`` and the alignment angles are measured against it.
    feedback_sign: int = 1

    @property
    def update_locked(self) -> bool:
        """Whether a hidden layer's update waits for the output error: every rule but DRTP,
        whose hidden signal ``B_l y`` is known before the forward pass starts."""
        return self.code != RuleCode.DRTP

    def held_activations(self, dims: tuple[int, ...]) -> int:
        """Forward-pass values per sample that a training step holds at once for the
        updates. Layer ``l``'s update needs its input ``h_{l-1}`` and, for a hidden layer,
        ``f'(a_l)``, which relu and tanh give from ``h_l`` (the next layer's input). An
        update-locked rule holds every layer's input until the output error exists:
        ``n_0 + ... + n_{L-1}``. DRTP updates hidden layer ``l`` as soon as its read is
        done and drops ``h_{l-1}`` then: at most ``max_l (n_{l-1} + n_l)`` over its hidden
        layers (``n_{L-1}`` for the output layer). Equal with one hidden layer; with more,
        DRTP holds two layers' values where the others hold them all."""
        if self.update_locked:
            return sum(dims[:-1])
        n_layers = len(dims) - 1
        return max(dims[l - 1] + (dims[l] if l < n_layers else 0)
                   for l in range(1, n_layers + 1))

    @property
    def direct(self) -> bool:
        """Whether the rule projects an output signal straight to every hidden layer through
        ``n_l x n_L`` arrays (DFA and relatives) rather than layer by layer."""
        return self.code in DIRECT_CODES

    def feedback_shapes(self, dims: tuple[int, ...]) -> list[tuple[int, int] | None]:
        """Shape of the feedback array of each layer ``l = 1..L`` (``None``: no array).

        FA-shaped arrays (``n_{l-1} x n_l``) carry the error of layer ``l`` down to layer
        ``l-1`` and exist for ``l = 2..L``; BP chips carry them too, unused by the rule, so
        that BP runs report the alignment with the same random matrices (a control).
        Direct arrays (``n_l x n_L``) project the output signal to hidden layer ``l < L``.
        """
        n_layers = len(dims) - 1
        if self.direct:
            return [(dims[l], dims[-1]) if l < n_layers else None for l in range(1, n_layers + 1)]
        return [(dims[l - 1], dims[l]) if l >= 2 else None for l in range(1, n_layers + 1)]


RULES = {
    "bp": Rule("bp", RuleCode.BP, True, "backpropagation (reads W^T: weight transport)"),
    "fa": Rule("fa", RuleCode.FA, False, "feedback alignment: fixed random B per layer"),
    "dfa": Rule("dfa", RuleCode.DFA, False, "direct feedback alignment: B e to each layer",
                "the output error e"),
    "sdfa": Rule("sdfa", RuleCode.SDFA, False,
                 "sign direct feedback alignment: B sign(e) to each layer", "the error's sign"),
    "drtp": Rule("drtp", RuleCode.DRTP, False,
                 "direct random target projection: B y (the one-hot target) to each layer",
                 "the one-hot target", feedback_sign=-1),
}


def get_rule(name: str) -> Rule:
    return RULES[name]


def is_direct(name: str | None) -> bool:
    """Whether the rule called ``name`` (as a run's summary records it) is a direct rule."""
    return name in RULES and RULES[name].direct
