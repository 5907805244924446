"""`node-transfer predict` and `report` on one run: new images classified as the test accuracy counted them."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from node_transfer import ExperimentConfig
from node_transfer.app.cli import main
from node_transfer.model.data import _digits
from node_transfer.run.experiment import run_experiment

TINY = dict(dataset="digits", image_size=32, freeze_backbone=True, cache_features=True, augment=False,
            batch_size=64, epochs=2, lr=3e-3, head="fc")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits run and the 360 digits test images as PNG files (labels in their file names)."""
    root = tmp_path_factory.mktemp("predict")
    run_dir = run_experiment(ExperimentConfig(out=str(root / "run"), **TINY), progress=False)
    _, test, _ = _digits()
    folder = root / "images"
    for i in range(len(test)):
        image, label = test[i]
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(folder / str(label) / f"{i:03d}.png")
    return run_dir, folder


def test_predictions_on_the_runs_test_images_match_its_test_accuracy(trained, capsys):
    run_dir, folder = trained
    assert main(["predict", str(run_dir), str(folder), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 360
    correct = 0
    for line in lines:
        path, _, rest = line.partition(": ")
        first, second = rest.split(", ")
        assert first.endswith("%)") and second.endswith("%)")
        correct += first.split(" (")[0] == path.split("/")[-2]
    test_acc = json.loads((run_dir / "metrics.json").read_text())["test_acc"]
    assert abs(correct / 360 - test_acc) <= 1 / 360 and test_acc > 0.6


def test_predict_writes_csv_with_class_names_and_probabilities(trained, tmp_path, capsys):
    run_dir, folder = trained
    images = sorted((folder / "3").glob("*.png"))[:2]
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run_dir), *map(str, images), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2", "class_3",
                             "probability_3"]
    probabilities = np.array([[float(r[f"probability_{k}"]) for k in (1, 2, 3)] for r in rows])
    assert (np.diff(probabilities, axis=1) <= 0).all() and (probabilities.sum(axis=1) <= 1 + 1e-6).all()
    assert all(r["class_1"] in [str(d) for d in range(10)] for r in rows)
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(images[0]), "--csv"]) == 0  # CSV on stdout
    assert capsys.readouterr().out.startswith("path,class_1,probability_1")


def test_predict_names_a_bad_run_directory_or_image(trained, tmp_path, capsys):
    run_dir, folder = trained
    assert main(["predict", str(tmp_path), str(folder)]) == 2
    assert "invalid parameter run_dir=" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    (tmp_path / "broken.png").write_text("not an image")
    assert main(["predict", str(run_dir), str(tmp_path / "broken.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    assert main(["predict", str(run_dir), str(tmp_path / "ok.png"), "--top", "0"]) == 2


def test_report_on_a_single_run_shows_its_metrics_and_curves(trained, tmp_path, capsys):
    run_dir, _ = trained
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "test_acc" in out and "head fc" in out and out.rstrip().endswith(str(tmp_path / "report"))
    assert (tmp_path / "report" / "curves.png").stat().st_size > 1000
    assert main(["report", str(tmp_path / "report")]) == 1  # neither a suite nor a run: no suite.json
