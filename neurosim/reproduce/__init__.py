"""``neurosim reproduce``: the experiments of Cheon, Lee & Paik (NeurIPS 2024), "Pretraining
with Random Noise for Fast and Robust Learning without Weight Transport", on simulated chips.

Each figure of the paper is one module with a ``run(context) -> Section`` function
(:mod:`neurosim.reproduce.suite` lists them in order); a :class:`~neurosim.reproduce.context.Context`
holds where results go, the chip, the seeds and the :class:`~neurosim.reproduce.settings.Settings`
(full or ``--quick``). Training runs go through the ordinary experiment runner, so every run
folder is a normal neurosim run (config, metrics, summary, ledger) and an interrupted
reproduction resumes without recomputing finished runs. A section carries its text, figures,
data files and the paper's claims each with our number and a computed verdict.
"""
