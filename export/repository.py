"""Write a Triton model repository: pre-processing, network, post-processing and their ensemble.

Every ``config.pbtxt`` is generated here from :mod:`banet.spec` (names, dtypes, shapes,
``max_batch_size``); the Python-backend ``model.py`` adapters are copied from ``triton_repo/``.
The network file goes into a NEW numeric version directory of ``banet_model`` (1, 2, ...), so a
repository a server is using is never modified under it; Triton serves the newest version.

By default the repository serves the hot path (``network_io="uint8"``): ``banet_preprocess`` sends
the resized uint8 image ``image_u8`` ``(B, S, S, 3)``, the network graph normalizes it and returns
the float16 ``probability`` ``(B, 1, S, S)``, and ``banet_postprocess`` turns that small map into the mask
(see :mod:`export.serving_graph`). ``network_io="float32"`` writes the reference route of before
(float32 ``image`` -> ``logits``), e.g. for an engine built from the float graph.

For ``tensorrt_plan`` the network's config is written from the engine's own I/O record (names, dtypes,
dims, profile), as the TensorRT builder read it from the parsed network (``export.tensorrt.network_tensors_of``,
kept per engine in the export's ``manifest.json``), and refused when that I/O is not what the ensemble
sends and expects: Triton's TensorRT backend compares the config with the engine and would refuse to load.

Layout::

    REPO/banet/config.pbtxt                 ensemble: IMAGE_BYTES [+ THRESHOLD] -> MASK_ENCODED, AREA, MASK, BOUNDARY
    REPO/banet/1/                           (empty version folder, required by Triton)
    REPO/banet_raw/{config.pbtxt,1/}        ensemble: IMAGE_PIXELS [+ THRESHOLD] -> the same outputs
    REPO/banet_pixels/{config.pbtxt,1/model.py}       decoded pixels -> network input (resize only)
    REPO/banet_preprocess/{config.pbtxt,1/model.py}   (preprocess="dali": 1/dali.py, see export/dali.py)
    REPO/banet_model/config.pbtxt
    REPO/banet_model/<N>/model.onnx [+ model.py]   python_onnxruntime / onnxruntime_onnx
    REPO/banet_model/<N>/model.plan                tensorrt_plan
    REPO/banet_postprocess/{config.pbtxt,1/model.py}
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from banet import processing, spec
from banet.atomic import write_text
from banet.spec import DECODE_OVERSAMPLE_PARAMETER, IMAGE_SIZE_PARAMETER, NETWORK_IO_PARAMETER, TensorSpec

log = logging.getLogger(__name__)

BACKENDS = ("python_onnxruntime", "onnxruntime_onnx", "tensorrt_plan")
PREPROCESSORS = ("python", "dali")
"""``banet_preprocess``: the Python backend (default; any server) or a DALI pipeline (GPU servers, export/dali.py)."""
QUEUE_DELAY_US = 2000
"""Dynamic batching of the network step: the longest a request waits there for others to join its batch
(microseconds). The pre/post steps get no delay (:func:`dynamic_batching`)."""
MODEL_FILES = {"python_onnxruntime": "model.onnx", "onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}


class RepositoryError(RuntimeError):
    """The repository cannot be written as asked; the message names the file and what to do."""


@dataclass(frozen=True)
class RepositoryConfig:
    """What a repository is generated from (everything else comes from :mod:`banet.spec`)."""

    backend: str = "python_onnxruntime"
    max_batch_size: int = spec.MAX_BATCH_SIZE
    instance_count: int = 1
    queue_delay_us: int = QUEUE_DELAY_US
    image_size: int = spec.IMAGE_SIZE
    """Network input side: the pre-processing resizes to it, the network config declares it."""
    network_io: str = "uint8"
    """``uint8``: the hot path (uint8 image in, uint8 probability out); ``float32``: the reference route."""
    decode_oversample: float = processing.REDUCED_DECODE_OVERSAMPLE
    """JPEGs are decoded at a reduced size keeping >= this many times ``image_size`` (uint8 hot path only)."""
    preprocess: str = "python"
    preprocess_instances: int = 1
    postprocess_instances: int = 1
    """Python-backend instances (one process, one core each) of the pre/post models (docs/serving.md)."""

    def __post_init__(self) -> None:
        if self.network_io not in spec.NETWORK_IO:
            raise ValueError(f"network_io must be one of {spec.NETWORK_IO}, got {self.network_io!r}")
        if self.preprocess not in PREPROCESSORS:
            raise ValueError(f"preprocess must be one of {PREPROCESSORS}, got {self.preprocess!r}")
        if self.preprocess == "dali" and self.network_io != "uint8":
            raise ValueError("the DALI pre-processing sends uint8 pixels: it needs network_io='uint8'")
        if not self.decode_oversample >= 1.0:
            raise ValueError(f"decode_oversample must be >= 1 (the decoded image must stay >= image_size), "
                             f"got {self.decode_oversample}")
        for name in ("preprocess_instances", "postprocess_instances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not 1 <= self.max_batch_size <= spec.MAX_BATCH_SIZE:
            # the TensorRT profile is built for batches up to spec.MAX_BATCH_SIZE; a larger Triton
            # max_batch_size would let the dynamic batcher send batches the engine refuses
            raise ValueError(f"max_batch_size must be within [1, {spec.MAX_BATCH_SIZE}] (the engine profile's max), "
                             f"got {self.max_batch_size}")
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be >= 1, got {self.instance_count}")


# --- config.pbtxt text ---------------------------------------------------------------------------
def _dims(shape: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _network_io(cfg: RepositoryConfig) -> tuple[TensorSpec, TensorSpec]:
    """The network's (input, output) at the repository's image size, for its network I/O."""
    tensor_in, tensor_out = spec.network_tensors(cfg.network_io)
    return spec.sized(tensor_in, cfg.image_size), spec.sized(tensor_out, cfg.image_size)


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters {{\n  key: "{k}"\n  value {{ string_value: "{v}" }}\n}}\n' for k, v in values.items())


def _tensor(t: TensorSpec, *, optional: bool = False) -> str:
    extra = "\n    optional: true" if optional else ""
    return f'  {{\n    name: "{t.name}"\n    data_type: {t.triton_dtype}\n    dims: {_dims(t.shape)}{extra}\n  }}'


def _io(kind: str, tensors: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(tensors) + "\n]"


def _header(name: str, engine: str, cfg: RepositoryConfig) -> str:
    return f'name: "{name}"\n{engine}\nmax_batch_size: {cfg.max_batch_size}\n'


def dynamic_batching(queue_delay_us: int = 0) -> str:
    """``dynamic_batching`` block; ``queue_delay_us`` 0 writes Triton's defaults ``dynamic_batching { }``.

    Following Triton's batcher guide (server ``docs/user_guide/batcher.md``): no ``preferred_batch_size``
    ("should not be specified" for most models; the exception is a TensorRT model with several optimization
    profiles, and our engines have one, batch 1..``spec.MAX_BATCH_SIZE``), and a delay only where it pays. With
    delay 0 the batcher still merges whatever requests are queued while the instances are busy, so the
    pre/post steps batch under load without making a lone request wait; a delay on each of the three ensemble
    steps would add up (3 x 2 ms at low load). Only the network step, where a bigger batch is cheaper per image
    on a GPU, waits up to :data:`QUEUE_DELAY_US` for others to join.
    """
    if queue_delay_us < 0:
        raise ValueError(f"queue_delay_us must be >= 0, got {queue_delay_us}")
    if queue_delay_us == 0:
        return "dynamic_batching { }\n"
    return f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"


def _instances(kind: str, count: int) -> str:
    return f"instance_group [\n  {{\n    kind: {kind}\n    count: {count}\n  }}\n]\n"


def preprocess_config(cfg: RepositoryConfig) -> str:
    network_input, _ = _network_io(cfg)
    return (_header(spec.PREPROCESS_MODEL, 'backend: "python"', cfg)
            + _io("input", [_tensor(spec.ENCODED_IMAGE)]) + "\n"
            + _io("output", [_tensor(network_input), _tensor(spec.ORIGINAL_SIZE)]) + "\n"
            + dynamic_batching() + _instances("KIND_CPU", cfg.preprocess_instances)
            + _parameters({IMAGE_SIZE_PARAMETER: str(cfg.image_size), NETWORK_IO_PARAMETER: cfg.network_io,
                           DECODE_OVERSAMPLE_PARAMETER: str(cfg.decode_oversample)}))


def pixels_config(cfg: RepositoryConfig) -> str:
    """``banet_pixels``: the raw ensemble's first step, decoded pixels -> the network input (resize only)."""
    network_input, _ = _network_io(cfg)
    return (_header(spec.PIXELS_MODEL, 'backend: "python"', cfg)
            + _io("input", [_tensor(spec.IMAGE_PIXELS)]) + "\n"
            + _io("output", [_tensor(network_input), _tensor(spec.ORIGINAL_SIZE)]) + "\n"
            + dynamic_batching() + _instances("KIND_CPU", cfg.preprocess_instances)
            + _parameters({IMAGE_SIZE_PARAMETER: str(cfg.image_size), NETWORK_IO_PARAMETER: cfg.network_io}))


def _served_outputs() -> list[TensorSpec]:
    """The post-processing step's (and the ensembles') outputs, in ``spec.SERVED_OUTPUTS`` order."""
    tensors = {t.name: t for t in (spec.MASK_ENCODED, spec.AREA, spec.MASK, spec.BOUNDARY)}
    return [tensors[name] for name in spec.SERVED_OUTPUTS]


def postprocess_config(cfg: RepositoryConfig) -> str:
    _, network_output = _network_io(cfg)
    return (_header(spec.POSTPROCESS_MODEL, 'backend: "python"', cfg)
            + _io("input", [_tensor(network_output), _tensor(spec.ORIGINAL_SIZE),
                            _tensor(spec.THRESHOLD, optional=True)]) + "\n"
            + _io("output", [_tensor(t) for t in _served_outputs()]) + "\n"
            + dynamic_batching() + _instances("KIND_CPU", cfg.postprocess_instances)
            + _parameters({NETWORK_IO_PARAMETER: cfg.network_io}))


def _engine_spec(tensors: list[dict], mode: str) -> TensorSpec:
    """The (single) ``mode`` tensor of an engine I/O record as a spec: dims without the batch axis."""
    (t,) = [t for t in tensors if t["mode"] == mode]
    return TensorSpec(t["name"], t["dtype"], tuple(int(d) for d in t["shape"][1:]))


def network_config(cfg: RepositoryConfig, engine_tensors: list[dict] | None = None) -> str:
    """``banet_model``'s config; for ``tensorrt_plan`` with ``engine_tensors`` (the engine's I/O record)
    the input/output names, data types and dims are the engine's."""
    engine = {
        "python_onnxruntime": 'backend: "python"',
        "onnxruntime_onnx": 'platform: "onnxruntime_onnx"',
        "tensorrt_plan": 'platform: "tensorrt_plan"',
    }[cfg.backend]
    kind = "KIND_CPU" if cfg.backend == "python_onnxruntime" else "KIND_GPU"
    network_input, network_output = _network_io(cfg)
    if engine_tensors is not None and cfg.backend == "tensorrt_plan":
        network_input, network_output = _engine_spec(engine_tensors, "input"), _engine_spec(engine_tensors, "output")
    warmup = (
        "model_warmup [\n  {\n    name: \"zeros_batch_1\"\n    batch_size: 1\n    inputs {\n"
        f"      key: \"{network_input.name}\"\n      value {{\n"
        f"        data_type: {network_input.triton_dtype}\n        dims: {_dims(network_input.shape)}\n"
        "        zero_data: true\n      }\n    }\n  }\n]\n"
    )
    return (_header(spec.NETWORK_MODEL, engine, cfg)
            + _io("input", [_tensor(network_input)]) + "\n"
            + _io("output", [_tensor(network_output)]) + "\n"
            + dynamic_batching(cfg.queue_delay_us) + _instances(kind, cfg.instance_count) + warmup)


def ensemble_config(cfg: RepositoryConfig, *, raw: bool = False) -> str:
    """``banet`` (encoded file in; ``raw``: ``banet_raw``, decoded pixels in) -> the served outputs.

    Both share the network and the post-processing; they differ in their first step (``banet_preprocess``
    decodes, ``banet_pixels`` only resizes). A second ensemble rather than an optional input of one: an
    ensemble routes every input to fixed steps, and the DALI pre-processing takes encoded files only."""
    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
        maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
        maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
        return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}'

    tensor_in, tensor_out = _network_io(cfg)
    image, size, logits = tensor_in.name, spec.ORIGINAL_SIZE.name, tensor_out.name
    if raw:
        name, first, source = spec.RAW_ENSEMBLE_MODEL, spec.PIXELS_MODEL, spec.IMAGE_PIXELS
    else:
        name, first = spec.ENSEMBLE_MODEL, spec.PREPROCESS_MODEL
        # DALI takes the file as a uint8 vector (Triton cannot hand BYTES to it)
        source = (TensorSpec(spec.ENCODED_IMAGE.name, "uint8", (-1,)) if cfg.preprocess == "dali"
                  else spec.ENCODED_IMAGE)
    steps = [
        step(first, {source.name: source.name}, {image: "preprocessed_image", size: "original_size"}),
        step(spec.NETWORK_MODEL, {image: "preprocessed_image"}, {logits: "network_logits"}),
        step(spec.POSTPROCESS_MODEL,
             {logits: "network_logits", size: "original_size", spec.THRESHOLD.name: spec.THRESHOLD.name},
             {t.name: t.name for t in _served_outputs()}),
    ]
    return (_header(name, 'platform: "ensemble"', cfg)
            + _io("input", [_tensor(source), _tensor(spec.THRESHOLD, optional=True)]) + "\n"
            + _io("output", [_tensor(t) for t in _served_outputs()]) + "\n"
            + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n")


# --- writing -------------------------------------------------------------------------------------
def _template_dir() -> Path:
    import triton_repo

    if getattr(triton_repo, "__file__", None):
        return Path(triton_repo.__file__).resolve().parent
    # an editable install made before triton_repo/ existed maps it as a namespace package
    return Path(list(triton_repo.__path__)[0]) if list(triton_repo.__path__) else Path(__file__).resolve().parents[1] / "triton_repo"


def _template(model: str) -> Path:
    path = _template_dir() / model / "1" / "model.py"
    if not path.is_file():
        raise RepositoryError(f"template missing: {path} (is the triton_repo package installed?)")
    return path


def _write_text(path: Path, text: str, *, force: bool) -> None:
    """Write ``path`` unless it already holds other content (then refuse unless ``force``)."""
    if path.exists():
        if path.read_text() == text:
            return
        if not force:
            raise RepositoryError(f"{path} exists with different content; pass force=True (--force) to replace it")
        log.warning("replacing %s", path)
    write_text(path, text)


def onnx_image_size(path: str | Path) -> int | None:
    """The square spatial size of the ONNX model's image input (float32 NCHW ``image`` or uint8 NHWC
    ``image_u8``), or None if it is not fixed and square."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise RepositoryError(f"{path} is not a readable ONNX model ({type(err).__name__}: {err})") from None
    for tensor in model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.type.tensor_type.shape.dim]
        if tensor.name in (spec.NETWORK_INPUT.name, spec.SERVING_INPUT.name) and len(dims) == 4:
            height, width = (dims[1], dims[2]) if tensor.name == spec.SERVING_INPUT.name else (dims[2], dims[3])
            return int(height) if height is not None and height == width else None
    raise RepositoryError(f"{path} has no input named {spec.NETWORK_INPUT.name!r} or {spec.SERVING_INPUT.name!r} "
                          f"(inputs: {[t.name for t in model.graph.input]})")


def onnx_int8_target(path: str | Path) -> str | None:
    """The INT8 recipe of an ONNX graph: ``"onnxruntime"`` (the x86 CPU one, export/quantize_cpu.py: U8
    activations, int32 biases), ``"tensorrt"`` (symmetric S8 Q/DQ only), or None (no Q/DQ).

    Read from the graph itself (the serving variants carry no ``banet.int8_target`` metadata): a
    QuantizeLinear with a uint8 zero point or a DequantizeLinear of an int32 tensor is the CPU recipe.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return meta.get("banet.int8_target")
    for node in qdq:
        zero_point = node.input[2] if len(node.input) > 2 else None
        if node.op_type == "QuantizeLinear" and inits.get(zero_point) == onnx.TensorProto.UINT8:
            return "onnxruntime"
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0]) == onnx.TensorProto.INT32:
            return "onnxruntime"
    return meta.get("banet.int8_target", "tensorrt")


def _refuse_cpu_int8_on_gpu(source: Path, backend: str) -> None:
    """The CPU INT8 graph is for ONNX Runtime's x86 kernels; ``onnxruntime_onnx`` runs on ``KIND_GPU``.

    There the CUDA execution provider has no kernels that fuse its DequantizeLinear -> Conv -> QuantizeLinear
    groups (U8 activations, int32 biases), so it runs the Q/DQ as separate float ops around float convs:
    slower than the FP16 graph, and nothing would say so.
    """
    if backend == "onnxruntime_onnx" and onnx_int8_target(source) == "onnxruntime":
        raise RepositoryError(
            f"{source} is the INT8 graph for ONNX Runtime's x86 CPU kernels (U8 activations, int32 biases); "
            "the onnxruntime_onnx backend serves it on KIND_GPU, where the CUDA provider runs its Q/DQ as float "
            "ops (slower than FP16). Serve it with --backend python_onnxruntime (KIND_CPU), or serve INT8 on the "
            "GPU with --backend tensorrt_plan (an engine built from model_int8.onnx), or FP16 with onnxruntime_onnx")


def _stage_model(source: Path, target: Path, *, backend: str, network_io: str) -> None:
    """Copy (or, for a float graph served with uint8 I/O, wrap) the model file into the version folder."""
    from export.serving_graph import add_uint8_io

    if backend == "tensorrt_plan":  # an engine cannot be inspected without TensorRT: the config says what it must be
        shutil.copyfile(source, target)
        return
    if _graph_io(source, network_io) == network_io:
        shutil.copyfile(source, target)
    else:
        add_uint8_io(source, target)  # a float32 graph (e.g. an export from before the serving variant)


def _graph_io(source: Path, network_io: str) -> str:
    """The ONNX file's network I/O, refused when it cannot serve ``network_io``."""
    from export.serving_graph import ServingGraphError, graph_io

    try:
        found = graph_io(source)
    except ServingGraphError as err:
        raise RepositoryError(str(err)) from None
    if found == "uint8" and network_io == "float32":
        raise RepositoryError(f"{source} is a uint8-I/O serving graph; a network_io=float32 repository needs "
                              "the float32 graph (model.onnx of the export)")
    return found


def engine_record(engine_path: str | Path) -> tuple[list[dict] | None, str]:
    """The I/O record of ``engine_path`` and where it came from: the export's ``manifest.json`` beside it
    (the entry whose engine, or whose Triton plan built by its ``trtexec`` command from the same ONNX file,
    has this file name), else the engine itself where TensorRT and a GPU can deserialize it; (None, why)
    otherwise."""
    import json

    path = Path(engine_path)
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        try:
            engines = json.loads(manifest.read_text()).get("engines", [])
        except (ValueError, AttributeError) as err:
            raise RepositoryError(f"{manifest} is not a readable export manifest ({err})") from None
        for entry in engines:
            if entry.get("tensors") and path.name in (entry.get("path"), entry.get("triton_plan")):
                return entry["tensors"], f"{manifest} ({entry['name']}, read from the builder's network)"
    from export import tensorrt as trt_route

    builder = trt_route.load_builder()
    if builder is not None and builder.can_run():
        try:
            return trt_route.read_engine_tensors(path, builder), f"the engine {path} ({builder.label})"
        except trt_route.EngineBuildError as err:
            return None, str(err)
    why = "no manifest.json beside it records its I/O" if not manifest.is_file() else \
        f"{manifest} has no engine entry with I/O for {path.name}"
    return None, f"{why}, and reading the engine itself needs TensorRT and a CUDA GPU"


def _check_engine(tensors: list[dict], source: str, *, network_io: str | None, image_size: int | None,
                  max_batch_size: int) -> tuple[str, int]:
    """The engine's network I/O and image size from its record, refused where it is not what the ensemble
    sends and expects (names, dtypes, dims) or its profile cannot take ``max_batch_size``."""
    from export import tensorrt as trt_route

    inputs = [t for t in tensors if t["mode"] == "input"]
    if len(inputs) != 1 or len(inputs[0].get("shape", [])) != 4:
        raise RepositoryError(f"the engine ({source}) must have one 4-D input, it has {inputs}")
    found_io = "uint8" if inputs[0].get("dtype") == "uint8" else "float32"
    if network_io is not None and network_io != found_io:
        raise RepositoryError(f"the engine ({source}) takes {inputs[0].get('dtype')} {inputs[0]['name']!r}: "
                              f"network_io {found_io}, not {network_io}")
    shape = inputs[0]["shape"]
    found_size = shape[1] if found_io == "uint8" else shape[2]
    if image_size is not None and image_size != found_size:
        raise RepositoryError(f"the engine ({source}) takes {found_size}x{found_size} images, not {image_size}")
    problems = trt_route.check_engine_io(tensors, found_io, image_size=found_size)
    if problems:
        raise RepositoryError(f"the engine ({source}) does not fit the ensemble: {'; '.join(problems)}")
    profile = inputs[0].get("profile")
    if profile and not (profile["min"][0] <= 1 and profile["max"][0] >= max_batch_size):
        raise RepositoryError(f"the engine's profile takes batches {profile['min'][0]}..{profile['max'][0]}; "
                              f"max_batch_size {max_batch_size} would send batches it refuses")
    return found_io, int(found_size)


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def write_repository(repo_dir: str | Path, *, onnx_path: str | Path | None = None,
                     engine_path: str | Path | None = None, backend: str = "python_onnxruntime",
                     max_batch_size: int = spec.MAX_BATCH_SIZE, instance_count: int = 1,
                     image_size: int | None = None, network_io: str | None = None,
                     engine_tensors: list[dict] | None = None,
                     decode_oversample: float = processing.REDUCED_DECODE_OVERSAMPLE,
                     preprocess: str = "python", preprocess_instances: int = 1, postprocess_instances: int = 1,
                     force: bool = False) -> Path:
    """Generate (or extend) the Triton repository at ``repo_dir``; return the new network version dir.

    ``backend``: ``python_onnxruntime`` (ONNX Runtime inside the Python backend, for servers with only
    that backend), ``onnxruntime_onnx`` (Triton's ONNX Runtime backend) or ``tensorrt_plan`` (a TensorRT
    engine built for this GPU with batch profile up to ``spec.MAX_BATCH_SIZE``; needs ``engine_path``).
    ``image_size`` (the network's input side) is read from the ONNX file when not given, and must
    agree with it when given. For an engine, its I/O record (``engine_tensors``; else
    :func:`engine_record`: the export's manifest beside it, or the engine itself on a GPU host) gives
    the image size, the network I/O and the network config's names, dtypes and dims, and must agree with
    ``image_size`` / ``network_io`` when those are given; with no record ``image_size`` and
    ``network_io`` must be given (nothing is assumed).
    ``network_io``: ``uint8`` (default for ONNX, the hot path: a float32 ONNX file is wrapped with
    :func:`export.serving_graph.add_uint8_io` on the way in; an engine must have been built from the
    serving graph) or ``float32`` (the reference route). ``preprocess_instances`` /
    ``postprocess_instances``: Python-backend processes of the pre/post models (docs/serving.md).
    ``preprocess="dali"``: the first step is a DALI pipeline (nvJPEG decode and resize on the GPU;
    ships ``banet_preprocess/1/dali.py``, which the container's DALI serializes at load; ``nvidia.dali`` is
    needed here to define it first with Triton's executor settings, NVIDIA's Triton container to serve it, see
    :mod:`export.dali`); the ensemble then takes ``IMAGE_BYTES`` as a ``UINT8 [-1]`` vector.
    The model file is copied into a new version directory ``banet_model/<N>``; configs and ``model.py``
    files that exist with other content are replaced only with ``force``.
    """
    if onnx_path is not None and Path(onnx_path).is_file():
        declared = onnx_image_size(onnx_path)
        if image_size is not None and declared is not None and image_size != declared:
            raise RepositoryError(f"{onnx_path} takes {declared}x{declared} images, not the {image_size} asked for")
        image_size = image_size or declared
    if backend == "tensorrt_plan" and engine_path is not None and Path(engine_path).is_file():
        record_source = "the given engine_tensors"
        if engine_tensors is None:
            engine_tensors, record_source = engine_record(engine_path)
        if engine_tensors is not None:
            network_io, image_size = _check_engine(engine_tensors, record_source, network_io=network_io,
                                                   image_size=image_size, max_batch_size=max_batch_size)
            log.info("%s: I/O from %s", engine_path, record_source)
        else:
            if network_io is None and onnx_path is not None and Path(onnx_path).is_file():
                network_io = _graph_io(Path(onnx_path), "uint8")  # the ONNX file the engine was built from
            if image_size is None or network_io is None:  # (an ONNX file given beside it gave its size above)
                raise RepositoryError(f"cannot tell the image size and I/O of {engine_path}: {record_source}; pass "
                                      "--image-size and --network-io (the sizes it was built for), or keep the "
                                      "export's manifest.json beside it")
            log.warning("%s: no I/O record (%s); the config declares the spec's %s I/O at %d px, which Triton "
                        "checks against the engine when it loads", engine_path, record_source, network_io, image_size)
    network_io = network_io or "uint8"
    cfg = RepositoryConfig(backend=backend, max_batch_size=max_batch_size, instance_count=instance_count,
                           image_size=image_size or spec.IMAGE_SIZE, network_io=network_io,
                           decode_oversample=decode_oversample, preprocess=preprocess,
                           preprocess_instances=preprocess_instances, postprocess_instances=postprocess_instances)
    given = engine_path if backend == "tensorrt_plan" else onnx_path
    source = None if given is None else Path(given)
    if source is None:
        wanted = "engine_path" if backend == "tensorrt_plan" else "onnx_path"
        raise RepositoryError(f"backend {backend!r} needs {wanted}")
    if not source.is_file():
        raise RepositoryError(f"model file not found: {source}")
    repo = Path(repo_dir)
    if repo.exists() and not repo.is_dir():
        raise RepositoryError(f"{repo} exists and is not a directory")
    if backend != "tensorrt_plan":
        _graph_io(source, network_io)  # refuse a graph that cannot serve this I/O before writing anything
        _refuse_cpu_int8_on_gpu(source, backend)

    if cfg.preprocess == "dali":
        from export import dali

        pre_config = dali.preprocess_config(cfg.image_size, max_batch_size=cfg.max_batch_size,
                                            instances=cfg.preprocess_instances)
    else:
        pre_config = preprocess_config(cfg)
    configs = {
        spec.PREPROCESS_MODEL: pre_config,
        spec.NETWORK_MODEL: network_config(cfg, engine_tensors),
        spec.POSTPROCESS_MODEL: postprocess_config(cfg),
        spec.ENSEMBLE_MODEL: ensemble_config(cfg),
        spec.PIXELS_MODEL: pixels_config(cfg),
        spec.RAW_ENSEMBLE_MODEL: ensemble_config(cfg, raw=True),
    }
    python_models = ((spec.PIXELS_MODEL, spec.POSTPROCESS_MODEL) if cfg.preprocess == "dali"
                     else (spec.PREPROCESS_MODEL, spec.PIXELS_MODEL, spec.POSTPROCESS_MODEL))
    extra_files: dict[Path, str] = {}
    if cfg.preprocess == "dali":
        if not dali.available():
            raise RepositoryError("preprocess='dali' needs nvidia.dali to check the pipeline: pip install '.[dali]'")
        # the repository ships dali.py, which the backend serializes with the container's DALI at load; define
        # it here first with Triton's executor settings, so a pipeline Triton would refuse is refused now
        pipeline_text = dali.render_autoserialized(cfg.image_size, max_batch_size=cfg.max_batch_size)
        try:
            dali.check_autoserialized(pipeline_text)
        except dali.DaliPipelineError as err:
            raise RepositoryError(str(err)) from None
        extra_files[repo / spec.PREPROCESS_MODEL / "1" / dali.AUTOSERIALIZED_FILE] = pipeline_text
        stale = repo / spec.PREPROCESS_MODEL / "1" / dali.PIPELINE_FILE
        if stale.exists() and not force:
            # the backend loads model.dali before dali.py (dali_backend src/dali_model.h LoadModel)
            raise RepositoryError(f"{stale} (a pipeline serialized by an earlier export) would be loaded by Triton "
                                  f"instead of {dali.AUTOSERIALIZED_FILE}; remove it or pass force=True (--force)")
    # check everything before writing anything, so a refusal leaves the repository as it was
    if not force:
        for model, text in configs.items():
            path = repo / model / "config.pbtxt"
            if path.exists() and path.read_text() != text:
                raise RepositoryError(f"{path} exists with different content (another backend or batch size?); "
                                      "pass force=True (--force) to replace it")
        for model in python_models:
            path = repo / model / "1" / "model.py"
            if path.exists() and path.read_bytes() != _template(model).read_bytes():
                raise RepositoryError(f"{path} differs from the template {_template(model)}; pass force=True to replace it")
        for path, text in extra_files.items():
            if path.exists() and path.read_text() != text:
                raise RepositoryError(f"{path} exists with different content; pass force=True (--force) to replace it")

    for model, text in configs.items():
        _write_text(repo / model / "config.pbtxt", text, force=force)
    for model in python_models:
        _write_text(repo / model / "1" / "model.py", _template(model).read_text(), force=force)
    for path, text in extra_files.items():
        _write_text(path, text, force=force)
    if cfg.preprocess == "dali" and stale.exists():
        log.warning("removing %s: Triton would load it instead of %s", stale, dali.AUTOSERIALIZED_FILE)
        stale.unlink()
    for ensemble in (spec.ENSEMBLE_MODEL, spec.RAW_ENSEMBLE_MODEL):
        (repo / ensemble / "1").mkdir(parents=True, exist_ok=True)

    model_dir = repo / spec.NETWORK_MODEL
    version = (_versions(model_dir) or [0])[-1] + 1
    target = model_dir / str(version)
    tmp = model_dir / f".{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _stage_model(source, tmp / MODEL_FILES[backend], backend=backend, network_io=network_io)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backend == "python_onnxruntime":
        shutil.copyfile(_template(spec.NETWORK_MODEL), tmp / "model.py")
    tmp.rename(target)  # the version appears complete or not at all (Triton may be polling)
    log.info("wrote %s (backend %s, network I/O %s, version %d, max_batch_size %d)", repo, backend, network_io,
             version, cfg.max_batch_size)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m export.repository --onnx model.onnx --out model_repository``: a repository from a file."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m export.repository", description=main.__doc__)
    p.add_argument("--out", required=True, type=Path, help="repository folder (created or extended)")
    p.add_argument("--onnx", type=Path, help="ONNX model (python_onnxruntime / onnxruntime_onnx)")
    p.add_argument("--engine", type=Path, help="TensorRT engine (tensorrt_plan)")
    p.add_argument("--backend", choices=BACKENDS, default="python_onnxruntime")
    p.add_argument("--max-batch-size", type=int, default=spec.MAX_BATCH_SIZE)
    p.add_argument("--instance-count", type=int, default=1, help="network instances")
    p.add_argument("--network-io", choices=spec.NETWORK_IO, default=None,
                   help="uint8: the hot path (default for ONNX; a float32 ONNX file is wrapped); float32: the "
                        "reference route. For an engine: read from the export's manifest.json beside it")
    p.add_argument("--decode-oversample", type=float, default=processing.REDUCED_DECODE_OVERSAMPLE,
                   help="reduced JPEG decode keeps >= this x the network size (1 = fastest; default from parity)")
    p.add_argument("--preprocess", choices=PREPROCESSORS, default="python",
                   help="python (default) or dali: nvJPEG decode + resize on the GPU (NVIDIA's Triton container)")
    p.add_argument("--preprocess-instances", type=int, default=1, help="banet_preprocess processes (docs/serving.md)")
    p.add_argument("--postprocess-instances", type=int, default=1, help="banet_postprocess processes")
    p.add_argument("--image-size", type=int, default=None,
                   help="the network's input side (default: read from the ONNX file, or for an engine from the "
                        "export's manifest.json beside it; required for an engine without one)")
    p.add_argument("--force", action="store_true", help="replace configs/templates that differ")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        version = write_repository(args.out, onnx_path=args.onnx, engine_path=args.engine, backend=args.backend,
                                   max_batch_size=args.max_batch_size, instance_count=args.instance_count,
                                   image_size=args.image_size, network_io=args.network_io,
                                   decode_oversample=args.decode_oversample, preprocess=args.preprocess,
                                   preprocess_instances=args.preprocess_instances,
                                   postprocess_instances=args.postprocess_instances, force=args.force)
    except (RepositoryError, ValueError) as err:
        print(f"export.repository: {err}", file=sys.stderr)
        return 1
    print(f"wrote {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
