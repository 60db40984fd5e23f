"""Time per study of the ONNX model on a 300-slice 512x512 CT, against the stub, in process.

    PYTHONPATH=. python bench/onnx_model.py [--repeat 3]

Builds a small 3D CNN (Conv 1->4 k3, ReLU, GlobalAveragePool, Gemm to 1, Sigmoid) with the onnx
helper API for input 1x1x96x192x192, writes the CT into a temp folder, and times
``analyze_files`` with the stub and with ``OnnxModel`` (median of --repeat), splitting the ONNX
study into volume decode, window + resample, and inference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from medscan.analyzer import StubModel, analyze_files
from medscan.analyzer.onnx_model import SETTINGS_VARIABLE, OnnxModel
from tests.dicom_factory import write_ct_series

SHAPE = (96, 192, 192)


def conv_net(path: Path) -> None:
    """The benchmark network, with fixed random weights."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(rng.normal(size=(4, 1)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 6),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["l"]),
        helper.make_node("Sigmoid", ["l"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def timed(function, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = write_ct_series(root / "ct", n_slices=300, rows=512, columns=512)
        conv_net(root / "net.onnx")
        settings = root / "onnx.toml"
        settings.write_text(
            'model = "net.onnx"\nshape = [96, 192, 192]\nwindow = [-600, 1500]\n'
            'spacing_mm = [2.0, 1.5, 1.5]\nname = "bench"\n'
        )
        os.environ[SETTINGS_VARIABLE] = str(settings)
        model = OnnxModel()

        def study(chosen):
            return analyze_files(files, path_to_study="ct", model=chosen, threshold=0.5)

        stub = timed(lambda: study(StubModel()), args.repeat)
        onnx_total = timed(lambda: study(model), args.repeat)
        parts = {"decode": [], "window+resample": [], "inference": []}

        class Split:
            name, version, modalities = "split", "1", None

            def predict(self, series):
                start = time.perf_counter()
                series.volume()
                parts["decode"].append(time.perf_counter() - start)
                start = time.perf_counter()
                x = model.preprocess(series)
                parts["window+resample"].append(time.perf_counter() - start)
                start = time.perf_counter()
                model.session.run(None, {model.input_name: x})
                parts["inference"].append(time.perf_counter() - start)
                return model.predict(series)

        for _ in range(args.repeat):
            study(Split())
        print(f"threads {model.session.get_session_options().intra_op_num_threads}")
        print(f"stub study      {stub:.2f} s")
        print(f"onnx study      {onnx_total:.2f} s")
        for name, values in parts.items():
            share = statistics.median(values) / onnx_total
            print(f"  {name:16s}{statistics.median(values):.2f} s ({share:.0%})")


if __name__ == "__main__":
    main()
