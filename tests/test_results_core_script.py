"""The script that regenerates docs/results-core.md runs end to end (tiny settings)."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "docs" / "scripts"))
import results_core  # noqa: E402


def test_results_core_regenerates_a_document(tmp_path, monkeypatch):
    doc = tmp_path / "doc" / "results-core.md"
    monkeypatch.setattr(sys, "argv", [
        "results_core.py", "--out", str(tmp_path / "runs"), "--doc", str(doc),
        "--set", "data.dataset=digits", "--set", "data.train_size=256",
        "--set", "data.test_size=64", "--set", "seeds=[0, 1]",
        "--set", "network.dims=[784, 16, 10]", "--set", "train.epochs=1",
        "--set", "precondition.steps=20", "--set", "precondition.n_examples=128",
        "--set", "precondition.log_every=10", "--set", "evaluation.ood=[rotate]",
        "--set", "evaluation.train_probe_size=128", "--set", "evaluation.noise_probe_size=256"])
    assert results_core.main() == 0
    text = doc.read_text()
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert heading in text
    assert "| acceptance check | holds |" in text
    for name in ("noise_alignment", "compare_test_accuracy"):
        assert (doc.parent / "figures" / "results-core" / f"{name}.png").is_file()
        assert f"figures/results-core/{name}.png" in text
    # Numbers come from the runs: the FA+noise row of seed 0 is in the AUC table.
    summary = results_core.load_runs(tmp_path / "runs")["fa_noise"][0].summary
    assert f"{summary['train']['auc_first_epoch']:.4f}" in text
