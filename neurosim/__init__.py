"""neurosim: simulate neuromorphic chips trained with local learning rules.

Chips hold forward weights in crossbar arrays and fixed random feedback arrays; they are
trained with feedback alignment and relatives (no weight transport), optionally after
preconditioning on random noise (Cheon, Lee & Paik, NeurIPS 2024).
"""

__version__ = "0.1.0"
