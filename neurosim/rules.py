"""Learning rules: what error signal each hidden layer receives (DESIGN §3).

With ``a_l = W_l h_{l-1} + b_l``, ``h_l = f(a_l)`` and ``e = softmax(a_L) - y``:

* ``bp``  (reference): ``delta_L = e``; ``delta_l = (W_{l+1}^T delta_{l+1}) * f'(a_l)``.
  Reads the forward array transposed: **weight transport**.
* ``fa``  (Lillicrap et al. 2016): ``delta_l = (B_{l+1} delta_{l+1}) * f'(a_l)``,
  ``B_{l+1}`` of shape ``n_l x n_{l+1}``.
* ``dfa`` (Nøkland 2016): ``delta_l = (B_l e) * f'(a_l)``, ``B_l`` of shape ``n_l x n_L``.

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


@dataclass(frozen=True)
class Rule:
    name: str
    code: RuleCode
    weight_transport: bool
    description: str

    def feedback_shapes(self, dims: tuple[int, ...]) -> list[tuple[int, int] | None]:
        """Shape of the feedback array of each layer ``l = 1..L`` (``None``: no array).

        FA-shaped arrays (``n_{l-1} x n_l``) carry the error of layer ``l`` down to layer
        ``l-1`` and exist for ``l = 2..L``; BP chips carry them too, unused by the rule, so
        that BP runs report the alignment with the same random matrices (a control).
        DFA arrays (``n_l x n_L``) project the output error to hidden layer ``l < L``.
        """
        n_layers = len(dims) - 1
        if self.code == RuleCode.DFA:
            return [(dims[l], dims[-1]) if l < n_layers else None for l in range(1, n_layers + 1)]
        return [(dims[l - 1], dims[l]) if l >= 2 else None for l in range(1, n_layers + 1)]


RULES = {
    "bp": Rule("bp", RuleCode.BP, True, "backpropagation (reads W^T: weight transport)"),
    "fa": Rule("fa", RuleCode.FA, False, "feedback alignment: fixed random B per layer"),
    "dfa": Rule("dfa", RuleCode.DFA, False, "direct feedback alignment: B e to each layer"),
}


def get_rule(name: str) -> Rule:
    return RULES[name]
