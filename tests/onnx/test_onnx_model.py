"""The ONNX model: tiny graphs built here, whose probability is computed by hand."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from medscan import create_app  # noqa: E402
from medscan.analyzer import ModelLoadError, load_model  # noqa: E402
from medscan.analyzer.onnx_model import SETTINGS_VARIABLE, OnnxModel, resample  # noqa: E402
from tests.dicom_factory import write_ct_series  # noqa: E402
from tests.helpers import create_patient, upload, zip_of  # noqa: E402

SPEC = "medscan.analyzer.onnx_model:OnnxModel"
HU = 100  # every voxel of the series below
WINDOW = (-600, 1500)
SCALED = (HU - WINDOW[0]) / (WINDOW[1] - WINDOW[0])


def constant_hu(index: int, rows: int, columns: int) -> np.ndarray:
    return np.full((rows, columns), HU + 1024, dtype=np.int16)  # intercept -1024


def mean_graph(path: Path, shape: list, head: str = "logit") -> Path:
    """input NCDHW -> ReduceMean over all as the logit `y`, or 2 logits [m, -m] (softmax)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m" if head == "softmax" else "y"], keepdims=0)]
    if head == "softmax":  # logits [m, -m]: softmax class 1 = 1 / (1 + e^(2m))
        nodes += [
            helper.make_node("Neg", ["m"], ["n"]),
            helper.make_node("Unsqueeze", ["m", "axes"], ["m1"]),
            helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
            helper.make_node("Concat", ["m1", "n1"], ["y"], axis=0),
        ]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def write_settings(folder: Path, model: str, **extra) -> Path:
    lines = {"model": f'"{model}"', "shape": "[4, 8, 8]", "window": str(list(WINDOW))}
    lines |= {"name": '"mean-net"', "version": '"2.1"', "output": '"probability"'}
    lines |= extra
    path = folder / "onnx.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    return path


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Path:
    """A sigmoid mean network with its settings, named by the variable; load_model forgets."""
    mean_graph(tmp_path / "mean.onnx", ["N", 1, "D", "H", "W"])
    path = write_settings(tmp_path, "mean.onnx", output='"sigmoid"')
    monkeypatch.setenv(SETTINGS_VARIABLE, str(path))
    load_model.cache_clear()
    yield path
    load_model.cache_clear()


def study_zip(tmp_path: Path) -> bytes:
    files = write_ct_series(tmp_path / "study", n_slices=5, pixel_fn=constant_hu)
    return zip_of({f"study/{path.name}": path.read_bytes() for path in files})


class TestThroughTheService:
    @pytest.fixture
    def app_config(self, settings):
        return {"MEDSCAN_MODEL": SPEC}

    def test_scan_analysis_reports_the_hand_computed_probability(self, client, tmp_path):
        response = upload(client, create_patient(client), study_zip(tmp_path), "study.zip")
        assert response.status_code == 201, response.get_json()
        body = client.post(f"/api/scans/{response.get_json()['id']}/analyze").get_json()
        probability = body["report"]["probability_of_pathology"]
        assert probability == pytest.approx(1 / (1 + math.exp(-SCALED)), abs=1e-6)
        assert body["result"]["extras"]["model"] == "mean-net"
        assert body["result"]["extras"]["model_version"] == "2.1"

    def test_bulk_run_reports_the_hand_computed_probability(self, client, tmp_path):
        data = {"file": (io.BytesIO(study_zip(tmp_path)), "batch.zip")}
        run = client.post("/api/bulk-runs", data=data, content_type="multipart/form-data")
        assert run.status_code == 201, run.get_json()
        csv_text = client.get(f"/api/bulk-runs/{run.get_json()['id']}/report.csv").text
        (row,) = csv.DictReader(io.StringIO(csv_text))
        assert row["processing_status"] == "Success"
        probability = float(row["probability_of_pathology"])
        assert probability == pytest.approx(1 / (1 + math.exp(-SCALED)), abs=1e-6)


def test_softmax_class_index_is_the_probability(tmp_path, monkeypatch, settings):
    mean_graph(tmp_path / "softmax.onnx", [1, 1, 4, 8, 8], head="softmax")
    path = write_settings(tmp_path, "softmax.onnx", output='"softmax"', class_index="1")
    monkeypatch.setenv(SETTINGS_VARIABLE, str(path))
    series_dir = tmp_path / "s"
    write_ct_series(series_dir, n_slices=3, pixel_fn=constant_hu)
    from medscan.analyzer import analyze_files

    analysis = analyze_files(
        sorted(series_dir.iterdir()), path_to_study="s", model=OnnxModel(), threshold=0.5
    )
    expected = 1 / (1 + math.exp(2 * SCALED))
    assert analysis.report.probability_of_pathology == pytest.approx(expected, abs=1e-6)


def test_bad_model_file_stops_the_start(tmp_path, settings):
    (tmp_path / "mean.onnx").write_bytes(b"not a network")
    with pytest.raises(ModelLoadError, match="mean.onnx"):
        create_app(
            {
                "MEDSCAN_MODEL": SPEC,
                "MEDSCAN_STORAGE_DIR": str(tmp_path),
                "MEDSCAN_WORK_DIR": str(tmp_path / "w"),
            }
        )


@pytest.mark.parametrize("shape", [[1, 1, 5, 8, 8], [1, 1, 8, 8]])
def test_input_shape_or_rank_unlike_the_settings_stops_the_start(tmp_path, settings, shape):
    mean_graph(tmp_path / "mean.onnx", shape)
    with pytest.raises(ModelLoadError, match=r"mean\.onnx.*NCDHW \[1, 1, 4, 8, 8\]"):
        OnnxModel()


def test_missing_settings_stop_the_start(monkeypatch):
    monkeypatch.delenv(SETTINGS_VARIABLE, raising=False)
    with pytest.raises(ModelLoadError, match=SETTINGS_VARIABLE):
        OnnxModel()


def test_resampling_to_a_target_spacing_then_pad_or_crop_to_the_shape():
    volume = np.ones((10, 20, 20), np.float32)
    out = resample(volume, (2.0, 1.0, 1.0), (30, 8, 8), (1.0, 1.0, 2.0))
    assert out.shape == (30, 8, 8)
    # 10 slices at 2 mm -> 20 at 1 mm, centred in 30 (5 padded each side); columns 20 -> 10 -> 8
    assert out[5:25].min() == 1 and out[:5].max() == 0 and out[25:].max() == 0
    assert resample(volume, None, (4, 8, 8), (1.0, 1.0, 1.0)).shape == (4, 8, 8)
