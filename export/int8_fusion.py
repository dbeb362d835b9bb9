"""A static check of an INT8 Q/DQ graph against TensorRT's explicit-quantization fusion rules (ONNX only).

TensorRT builds a Q/DQ graph exactly as the graph says (explicit quantization): a layer runs in INT8
only where the graph hands it quantized inputs, and every Q or DQ that the builder cannot fuse into a
neighbouring INT8 kernel becomes a kernel of its own that converts between INT8 and FP16 (a
reformat). Whether an INT8 engine beats FP16 is decided by the Q/DQ placement, which this module
reads from the ONNX graph alone, without TensorRT (the data-center TensorRT that would show the
engine's real layer precisions needs a GPU; references/precision/tensorrt_builds.py asks its engine inspector there).

The rules it checks, from TensorRT's documentation ("Explicit Quantization", sections "Q/DQ
Layer-Placement Recommendations" and "Q/DQ Fusion", docs.nvidia.com/deeplearning/tensorrt/latest/
inference-library/quantized-types-explicit-quantization.html):

- "Quantize all inputs of weighted operations": a ``Conv`` runs in INT8 only when its data input and
  its weight both come from a DequantizeLinear (``convs_int8``); with only the weight quantized TensorRT
  dequantizes the weight and runs the conv in FP16 (``convs_weight_only``).
- "By default, do not quantize the outputs of weighted operations" and "do not simulate batch
  normalization and ReLU fusions": a Q/DQ pair between a conv (or its BatchNorm) and its ReLU splits
  the conv + ReLU fusion (``qdq_between_conv_and_relu``).
- "Quantize the residual input in skip connections": TensorRT fuses an element-wise Add into the conv
  that produces one of its inputs; the precision of the *other* (residual) input decides the precision
  of the fused output, so the residual input must come from a DequantizeLinear. A residual add here is
  an ``Add`` one of whose inputs is a conv output read by that Add alone (the only shape the fusion
  takes); it is ``fused`` (INT8 conv + DQ residual), ``int8`` (both inputs through Q/DQ: an INT8
  element-wise kernel, not fused into the conv) or ``float``.
- Q/DQ fusion: a QuantizeLinear right after an INT8 conv's fused chain (conv, BatchNorm, fused Add,
  ReLU; through MaxPool, which commutes with Q) makes the conv write INT8; a DequantizeLinear whose
  consumers are all INT8 consumers (INT8 conv data inputs, fused residual inputs, quantizable ops
  whose outputs are quantized) is absorbed; a Q after, or a DQ before, an element-wise op is taken
  into TensorRT's pointwise kernel (``pointwise_boundaries``: the kernel reads or writes INT8). Every
  other activation Q or DQ is a standalone FP16 -> INT8 or INT8 -> FP16 conversion kernel: ``reformats``.

A static reading, not the builder: it follows the documented rules and cannot see kernel choices
(TensorRT may still pick an FP16 kernel for a tiny conv, or fuse more than listed here).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DOCS = ("TensorRT developer guide, Explicit Quantization: Q/DQ Layer-Placement Recommendations, Q/DQ Fusion "
        "(docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html)")
"""Where the rules checked here are written down (recorded with every report)."""
CONV_CHAIN = ("BatchNormalization", "Relu", "Clip")
"""Ops TensorRT fuses into the conv before them (pointwise epilogue)."""
COMMUTING = ("MaxPool",)
"""Ops a QuantizeLinear is moved backwards through (they commute with quantization)."""
QUANTIZABLE = ("MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Add", "Resize")
"""Non-weighted ops that run in INT8 when every input comes from a DQ and every output goes to a Q."""
POINTWISE = ("Add", "Sub", "Mul", "Div", "Sigmoid", "Relu", "Clip", "Tanh", "Neg", "Abs", "Sqrt", "Exp")
"""Element-wise ops: TensorRT fuses adjacent ones into one pointwise kernel, which also takes in a DQ at its
inputs and a Q at its output (its reads or writes are INT8; the math stays FP16). Such a Q or DQ is an
INT8/FP16 boundary but no kernel of its own: counted as ``pointwise_boundaries``, not as a reformat."""


@dataclass(frozen=True)
class Int8Fusion:
    """What TensorRT can fuse in one Q/DQ graph (counts, and the node names behind the ones that cost)."""

    convs: int
    convs_int8: int
    convs_weight_only: int
    convs_float: int
    residual_adds: int
    residual_adds_fused: int
    residual_adds_int8: int
    residual_adds_float: int
    other_adds: int
    qdq_between_conv_and_relu: int
    reformats: int
    quantize_standalone: int
    dequantize_standalone: int
    pointwise_boundaries: int
    int8_outputs: int
    """INT8 convs whose (fused) output is quantized in the same kernel (they write INT8)."""
    float_convs: list[str] = field(default_factory=list)
    float_residual_adds: list[str] = field(default_factory=list)
    reformat_tensors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rules": DOCS}

    def summary(self) -> str:
        """One line for the export's printed summary."""
        return (f"{self.convs_int8}/{self.convs} convs INT8 (Q/DQ on input and weight; {self.convs_weight_only} "
                f"weight-only), {self.residual_adds_fused}/{self.residual_adds} residual adds fused into their conv "
                f"(+{self.residual_adds_int8} INT8 element-wise), {self.qdq_between_conv_and_relu} Q/DQ between conv "
                f"and ReLU, {self.reformats} INT8<->FP16 reformats ({self.quantize_standalone} Q, "
                f"{self.dequantize_standalone} DQ standalone; {self.pointwise_boundaries} more absorbed by "
                f"FP16 pointwise kernels)")


class _Graph:
    def __init__(self, model) -> None:
        self.nodes = list(model.graph.node)
        self.inits = {i.name for i in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for name in n.input:
                if name:
                    self.consumers[name].append(n)

    def op(self, tensor: str) -> str | None:
        node = self.producer.get(tensor)
        return None if node is None else node.op_type

    def is_act_dq(self, tensor: str) -> bool:
        """``tensor`` comes from a DequantizeLinear of an activation (not of a weight initializer)."""
        node = self.producer.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear" and not self.is_weight(node.input[0])

    def is_weight(self, tensor: str) -> bool:
        """An initializer, or a Q/DQ of one (constants folded or not)."""
        if tensor in self.inits:
            return True
        node = self.producer.get(tensor)
        return (node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant", "Cast")
                and (node.op_type == "Constant" or self.is_weight(node.input[0])))

    def only_consumer(self, tensor: str):
        after = self.consumers.get(tensor, [])
        return after[0] if len(after) == 1 and tensor not in self.outputs else None


def _load(model_or_path):
    import onnx

    if isinstance(model_or_path, (str, Path)):
        return onnx.load(str(model_or_path), load_external_data=False)
    return model_or_path


def check_int8_fusion(model_or_path) -> Int8Fusion:
    """Read an INT8 Q/DQ graph (an ONNX ``ModelProto`` or its path) with TensorRT's fusion rules (module doc)."""
    g = _Graph(_load(model_or_path))
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    weight_q = {c.name for c in convs if len(c.input) > 1 and g.op(c.input[1]) == "DequantizeLinear"}
    int8 = {c.name for c in convs if c.name in weight_q and g.is_act_dq(c.input[0])}

    # residual adds: one input is a conv output read by that Add only (TensorRT's conv + add fusion)
    fused_inputs: set[tuple[str, str]] = set()  # (add name, residual tensor) of fused adds
    res = {"fused": [], "int8": [], "float": []}
    others = 0
    for add in (n for n in g.nodes if n.op_type == "Add" and len(n.input) == 2):
        direct = [i for i in add.input if g.op(i) == "Conv" and g.only_consumer(i) is add]
        if not direct:
            others += 1
            continue
        fusable = [i for i in direct if g.producer[i].name in int8]
        other = [i for i in add.input if i not in fusable[:1]]
        if fusable and other and g.is_act_dq(other[0]):
            res["fused"].append(add.name)
            fused_inputs.add((add.name, other[0]))
        elif all(g.is_act_dq(i) for i in add.input):
            res["int8"].append(add.name)
        else:
            res["float"].append(add.name)

    # Q/DQ between a conv (and its BatchNorm) and the ReLU after it
    qdq_relu = 0
    for q in (n for n in g.nodes if n.op_type == "QuantizeLinear"):
        src = g.producer.get(q.input[0])
        while src is not None and src.op_type == "BatchNormalization":
            src = g.producer.get(src.input[0])
        if src is None or src.op_type != "Conv":
            continue
        if any(dq.op_type == "DequantizeLinear" and any(r.op_type in ("Relu", "Clip") for r in g.consumers[dq.output[0]])
               for dq in g.consumers[q.output[0]]):
            qdq_relu += 1

    # which QuantizeLinears an INT8 conv writes itself: walk its fused chain to the tensor it outputs
    fused_q: set[str] = set()
    int8_outputs = 0
    fused_add_names = {a for a, _ in fused_inputs}
    chain_tensors: set[str] = set()  # written by a conv kernel (its fused epilogue included), not a pointwise kernel
    for conv in convs:
        tensor = conv.output[0]
        chain_tensors.add(tensor)
        while True:
            nxt = g.only_consumer(tensor)
            if nxt is None:
                break
            if nxt.op_type in CONV_CHAIN or nxt.op_type in COMMUTING or (nxt.op_type == "Add" and nxt.name in fused_add_names):
                tensor = nxt.output[0]
                chain_tensors.add(tensor)
                continue
            break
        if conv.name not in int8:
            continue
        after = g.consumers.get(tensor, [])
        if after and tensor not in g.outputs and all(n.op_type == "QuantizeLinear" for n in after):
            fused_q.update(n.name for n in after)
            int8_outputs += 1

    def int8_consumer(node, tensor: str) -> bool:
        if node.op_type == "Conv":
            return node.name in int8 and node.input[0] == tensor
        if node.op_type == "Add" and (node.name, tensor) in fused_inputs:
            return True
        if node.op_type in QUANTIZABLE:  # INT8 in, INT8 out
            outs = [c for o in node.output for c in g.consumers.get(o, [])]
            return (all(g.is_act_dq(i) or g.is_weight(i) or not i for i in node.input)
                    and bool(outs) and all(c.op_type == "QuantizeLinear" for c in outs)
                    and not any(o in g.outputs for o in node.output))
        return False

    quantize_standalone, dequantize_standalone, pointwise, boundary = 0, 0, 0, []
    for node in g.nodes:
        if node.op_type == "QuantizeLinear" and not g.is_weight(node.input[0]):
            src = g.producer.get(node.input[0])
            if node.name in fused_q:
                continue
            if src is not None and src.op_type in QUANTIZABLE and int8_consumer(src, src.input[0]):
                continue  # the output quantization of an INT8 pooling/concat/add kernel
            if src is not None and src.op_type in POINTWISE and node.input[0] not in chain_tensors:
                pointwise += 1
                continue
            quantize_standalone += 1
            boundary.append(node.input[0])
        elif node.op_type == "DequantizeLinear" and not g.is_weight(node.input[0]):
            out = node.output[0]
            rest = [c for c in g.consumers.get(out, []) if not int8_consumer(c, out)]
            if out in g.outputs or any(c.op_type not in POINTWISE for c in rest):
                dequantize_standalone += 1
                boundary.append(out)
            elif rest:
                pointwise += 1
    return Int8Fusion(
        convs=len(convs), convs_int8=len(int8), convs_weight_only=len(weight_q - int8),
        convs_float=len(convs) - len(weight_q), residual_adds=sum(map(len, res.values())),
        residual_adds_fused=len(res["fused"]), residual_adds_int8=len(res["int8"]),
        residual_adds_float=len(res["float"]), other_adds=others, qdq_between_conv_and_relu=qdq_relu,
        reformats=quantize_standalone + dequantize_standalone, quantize_standalone=quantize_standalone,
        dequantize_standalone=dequantize_standalone, pointwise_boundaries=pointwise, int8_outputs=int8_outputs,
        float_convs=[c.name for c in convs if c.name not in int8], float_residual_adds=res["float"],
        reformat_tensors=boundary)
