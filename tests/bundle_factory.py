"""Small real models built by the tests themselves (no binary blobs in the repository).

Each builder writes a complete bundle folder: TorchScript and ONNX weights exported from one
PyTorch module, an rdf.yaml (0.4 or 0.5) and test tensors computed by the module itself -- not by
deepimagej -- on inputs pre-processed by hand in numpy.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TORCH_VERSION = "2.13"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _torch() -> Any:
    import torch

    return torch


def export(
    module: Any, examples: tuple[Any, ...], folder: Path, inputs: list[str], outputs: list[str]
) -> None:
    """``model.pt`` (TorchScript) and ``model.onnx`` (batch and spatial axes dynamic) of ``module``."""
    torch = _torch()
    module = module.eval()
    torch.jit.script(module).save(str(folder / "model.pt"))
    dynamic = {name: {0: "b", 2: f"y_{name}", 3: f"x_{name}"} for name in [*inputs, *outputs]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            examples,
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            dynamo=False,
            opset_version=17,
        )
    (folder / "model.onnx").write_bytes(buffer.getvalue())


def weights_entries(folder: Path) -> dict[str, Any]:
    return {
        "torchscript": {
            "source": "model.pt",
            "sha256": sha256(folder / "model.pt"),
            "pytorch_version": TORCH_VERSION,
        },
        "onnx": {"source": "model.onnx", "sha256": sha256(folder / "model.onnx"), "opset_version": 17},
    }


def write_rdf(folder: Path, rdf: dict[str, Any]) -> Path:
    base = {
        "type": "model",
        "description": "a test model built by deepimagej's tests",
        "authors": [{"name": "deepimagej tests"}],
        "cite": [{"text": "deepimagej", "doi": "10.1038/s41592-021-01262-9"}],
        "license": "MIT",
        "documentation": "README.md",
        "timestamp": "2026-11-30T00:00:00",
    }
    (folder / "README.md").write_text("A test model.\n")
    path = folder / "rdf.yaml"
    path.write_text(yaml.safe_dump({**base, **rdf}, sort_keys=False))
    return path


def run_module(module: Any, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    torch = _torch()
    with torch.inference_mode():
        out = module.eval()(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.numpy() for o in out)


def space(axis: str, size: Any, halo: int = 0, scale: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": axis, "type": "space", "size": size}
    if halo:
        entry["halo"] = halo
    if scale is not None:
        entry["scale"] = scale
    return entry


# --------------------------------------------------------------------------------------------
# two inputs, two outputs
# --------------------------------------------------------------------------------------------


def two_in_two_out_module() -> Any:
    torch = _torch()
    nn = torch.nn

    class TwoInTwoOut(nn.Module):
        """raw (1 channel) + aux (2 channels) -> seg (3 channels, soft-max) + score (1 channel)."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 4, 3, padding=1)
            self.b = nn.Conv2d(2, 4, 3, padding=1)
            self.mid = nn.Conv2d(8, 8, 3, padding=1)
            self.seg = nn.Conv2d(8, 3, 3, padding=1)
            self.score = nn.Conv2d(8, 1, 3, padding=1)

        def forward(self, raw: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = torch.relu(torch.cat([self.a(raw), self.b(aux)], 1))
            h = torch.relu(self.mid(h))
            return torch.softmax(self.seg(h), 1), torch.sigmoid(self.score(h))

    torch.manual_seed(0)
    return TwoInTwoOut()


def preprocess_two_inputs(raw: np.ndarray, aux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rdf's pre-processing, by hand: raw zero-mean unit-variance over y, x; aux scaled by raw's percentiles."""
    r = raw.astype(np.float64)
    raw_n = (r - r.mean(axis=(2, 3), keepdims=True)) / (r.std(axis=(2, 3), keepdims=True) + 1e-6)
    lo, hi = np.percentile(r, [1, 99], axis=(2, 3), keepdims=True)
    aux_n = (aux.astype(np.float64) - lo) / (hi - lo + 1e-6)
    return raw_n.astype(np.float32), aux_n.astype(np.float32)


def two_in_two_out_bundle(folder: Path) -> Path:
    """A bioimage.io 0.5 bundle of :func:`two_in_two_out_module` with test tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    module = two_in_two_out_module()
    rng = np.random.default_rng(1)
    raw = (rng.random((1, 1, 64, 96)) * 200 + 20).astype(np.float32)
    aux = (rng.random((1, 2, 64, 96)) * 150).astype(np.float32)
    examples = tuple(_torch().from_numpy(a) for a in preprocess_two_inputs(raw, aux))
    export(module, examples, folder, ["raw", "aux"], ["seg", "score"])
    seg, score = run_module(module, *preprocess_two_inputs(raw, aux))
    for name, array in (("raw", raw), ("aux", aux), ("seg", seg), ("score", score)):
        np.save(folder / f"{name}.npy", array)
    free = {"min": 8, "step": 4}

    def follows(axis: str, halo: int = 0) -> dict[str, Any]:
        return space(axis, {"tensor_id": "raw", "axis_id": axis}, halo)

    rdf = {
        "format_version": "0.5.4",
        "name": "two inputs two outputs",
        "inputs": [
            {
                "id": "raw",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["raw"]},
                    space("y", free),
                    space("x", free),
                ],
                "test_tensor": {"source": "raw.npy", "sha256": sha256(folder / "raw.npy")},
                "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}],
            },
            {
                "id": "aux",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["a", "b"]},
                    follows("y"),
                    follows("x"),
                ],
                "test_tensor": {"source": "aux.npy", "sha256": sha256(folder / "aux.npy")},
                "preprocessing": [
                    {
                        "id": "scale_range",
                        "kwargs": {
                            "axes": ["y", "x"],
                            "min_percentile": 1,
                            "max_percentile": 99,
                            "reference_tensor": "raw",
                        },
                    }
                ],
            },
        ],
        "outputs": [
            {
                "id": "seg",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["bg", "fg", "edge"]},
                    follows("y", 4),
                    follows("x", 4),
                ],
                "test_tensor": {"source": "seg.npy", "sha256": sha256(folder / "seg.npy")},
            },
            {
                "id": "score",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["score"]},
                    follows("y", 4),
                    follows("x", 4),
                ],
                "test_tensor": {"source": "score.npy", "sha256": sha256(folder / "score.npy")},
            },
        ],
        "weights": weights_entries(folder),
    }
    return write_rdf(folder, rdf)


# --------------------------------------------------------------------------------------------
# scaled outputs
# --------------------------------------------------------------------------------------------


def resampling_module(kind: str) -> tuple[Any, Callable[[int], int]]:
    """(module, output size for an input size) for ``up2``, ``up4``, ``down2`` or ``valid`` (no padding)."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed({"up2": 2, "up4": 4, "down2": 5, "valid": 6}[kind])
    if kind.startswith("up"):
        factor = int(kind[2:])
        layers = [
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=factor, mode="nearest"),
            nn.Conv2d(4, 2, 3, padding=1),
        ]
        return nn.Sequential(*layers), lambda n: n * factor
    if kind == "down2":
        layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 2, 3, padding=1)]
        return nn.Sequential(*layers), lambda n: n // 2
    layers = [nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)]  # valid convolutions: 2 pixels lost per side
    return nn.Sequential(*layers), lambda n: n - 4


def resampling_bundle(folder: Path, kind: str) -> Path:
    """A bundle whose output is scaled (0.5 size references with axis scales for ``up*``; 0.4
    ``{reference_tensor, scale, offset}`` for ``down2`` and ``valid``), with test tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    module, _ = resampling_module(kind)
    rng = np.random.default_rng(3)
    raw = rng.random((1, 1, 48, 64)).astype(np.float32)
    export(module, (_torch().from_numpy(raw),), folder, ["raw"], ["out"])
    (out,) = run_module(module, raw)
    np.save(folder / "raw.npy", raw)
    np.save(folder / "out.npy", out)
    weights = weights_entries(folder)
    if kind.startswith("up"):
        factor = int(kind[2:])
        halo = 4 * factor  # output pixels (2 input pixels of context per side, doubled for safety)
        rdf = {
            "format_version": "0.5.4",
            "name": f"upsampling x{factor}",
            "inputs": [
                {
                    "id": "raw",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": ["raw"]},
                        space("y", {"min": 8, "step": 4}, scale=1.0),
                        space("x", {"min": 8, "step": 4}, scale=1.0),
                    ],
                    "test_tensor": {"source": "raw.npy", "sha256": sha256(folder / "raw.npy")},
                }
            ],
            "outputs": [
                {
                    "id": "out",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": ["a", "b"]},
                        space("y", {"tensor_id": "raw", "axis_id": "y"}, halo, scale=1.0 / factor),
                        space("x", {"tensor_id": "raw", "axis_id": "x"}, halo, scale=1.0 / factor),
                    ],
                    "test_tensor": {"source": "out.npy", "sha256": sha256(folder / "out.npy")},
                }
            ],
            "weights": weights,
        }
    else:
        scale, offset, halo = (0.5, 0, 3) if kind == "down2" else (1, -2, 2)
        rdf = {
            "format_version": "0.4.10",
            "name": f"{kind} model",
            "inputs": [
                {
                    "name": "raw",
                    "axes": "bcyx",
                    "data_type": "float32",
                    "data_range": [0, 1],
                    "shape": {"min": [1, 1, 8, 8], "step": [0, 0, 4, 4]},
                }
            ],
            "outputs": [
                {
                    "name": "out",
                    "axes": "bcyx",
                    "data_type": "float32",
                    "data_range": [0, 1],
                    "halo": [0, 0, halo, halo],
                    "shape": {
                        "reference_tensor": "raw",
                        "scale": [1, None, scale, scale],
                        "offset": [0, 1, offset, offset],
                    },
                }
            ],
            "test_inputs": ["raw.npy"],
            "test_outputs": ["out.npy"],
            "weights": {
                "torchscript": {**weights["torchscript"], "pytorch_version": "2.13"},
                "onnx": {**weights["onnx"], "opset_version": 17},
            },
        }
    return write_rdf(folder, rdf)


# --------------------------------------------------------------------------------------------
# pytorch_state_dict: the architecture ships as Python source
# --------------------------------------------------------------------------------------------

TINY_NET_SOURCE = '''"""A tiny network, shipped as the architecture of a pytorch_state_dict bundle."""
import torch


class TinyNet(torch.nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.first = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.last = torch.nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.last(torch.relu(self.first(x))))
'''


def state_dict_bundle(folder: Path) -> tuple[Path, Any]:
    """A bioimage.io 0.5 bundle with ``pytorch_state_dict`` weights only, and the module it holds."""
    torch = _torch()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "tiny_net.py"
    source.write_text(TINY_NET_SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(TINY_NET_SOURCE, str(source), "exec"), namespace)  # the test's own code, not the bundle's
    torch.manual_seed(7)
    module = namespace["TinyNet"](channels=4).eval()
    torch.save(module.state_dict(), folder / "weights.pt")
    raw = np.random.default_rng(4).random((1, 1, 40, 56)).astype(np.float32)
    (out,) = run_module(module, raw)
    np.save(folder / "raw.npy", raw)
    np.save(folder / "out.npy", out)
    rdf = {
        "format_version": "0.5.4",
        "name": "state dict model",
        "inputs": [
            {
                "id": "raw",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["raw"]},
                    space("y", {"min": 8, "step": 8}),
                    space("x", {"min": 8, "step": 8}),
                ],
                "test_tensor": {"source": "raw.npy", "sha256": sha256(folder / "raw.npy")},
            }
        ],
        "outputs": [
            {
                "id": "out",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["p"]},
                    space("y", {"tensor_id": "raw", "axis_id": "y"}, 4),
                    space("x", {"tensor_id": "raw", "axis_id": "x"}, 4),
                ],
                "test_tensor": {"source": "out.npy", "sha256": sha256(folder / "out.npy")},
            }
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "sha256": sha256(folder / "weights.pt"),
                "pytorch_version": TORCH_VERSION,
                "architecture": {
                    "source": "tiny_net.py",
                    "sha256": sha256(source),
                    "callable": "TinyNet",
                    "kwargs": {"channels": 4},
                },
            }
        },
    }
    return write_rdf(folder, rdf), module


# --------------------------------------------------------------------------------------------
# a DeepImageJ 1.x config.xml bundle whose output is channel-last (NHWC) with 3 channels
# --------------------------------------------------------------------------------------------

CONFIG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Model>
  <ModelInformation><Name>NHWC density maps</Name><Author>deepimagej tests</Author></ModelInformation>
  <ModelTest><InputSize>64x64</InputSize><OutputSize>64x64</OutputSize><MemoryPeak>null</MemoryPeak>
    <Runtime>null</Runtime><PixelSize>1.00pixel x 1.00pixel</PixelSize></ModelTest>
  <ModelCharacteristics>
    <ModelTag>tf.saved_model.tag_constants.SERVING</ModelTag>
    <SignatureDefinition>tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY</SignatureDefinition>
    <InputTensorDimensions>,-1,-1,-1,1,</InputTensorDimensions>
    <NumberOfInputs>1</NumberOfInputs><InputNames0>input</InputNames0><InputOrganization0>NHWC</InputOrganization0>
    <NumberOfOutputs>1</NumberOfOutputs><OutputNames0>output</OutputNames0><OutputOrganization0>NHWC</OutputOrganization0>
    <Channels>1</Channels><FixedPatch>false</FixedPatch><MinimumSize>4</MinimumSize><PatchSize>64</PatchSize>
    <FixedPadding>true</FixedPadding><Padding>6</Padding>
    <PreprocessingFile>null</PreprocessingFile><PostprocessingFile>null</PostprocessingFile>
  </ModelCharacteristics>
</Model>
"""


def nhwc_config_bundle(folder: Path, channels: int = 3) -> Path:
    """A config.xml bundle: a Keras network (1 channel in, ``channels`` out) saved as a SavedModel."""
    import keras
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(
        inputs, keras.layers.Conv2D(channels, 3, padding="same", activation="softplus")(hidden)
    )

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="input")])
    def serve(x: Any) -> dict[str, Any]:
        return {"output": model(x, training=False)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    (folder / "config.xml").write_text(CONFIG_XML)
    return folder / "config.xml"
