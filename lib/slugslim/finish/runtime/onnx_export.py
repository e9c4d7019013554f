"""The torch half of ``onnx_tool.py convert``: export a model to ONNX and compute torch's reference outputs.

A sibling of ``onnx_tool.py``, imported from the script's directory; torch, transformers and
sentence-transformers are the app's own, passed in or imported here, never slugslim's.

Which exporter, per kind:
- Hugging Face text models: the TorchScript-based exporter (``dynamo=False``), with batch and
  sequence axes left open. It exports a small model in 0.7 s where the dynamo exporter takes 2.4 s
  (torch 2.13.0, all-MiniLM-L6-v2: 2.7 s against 7.7 s), needs nothing beyond torch, and has
  exported these encoder families since torch 1.x; the app's torch may be older than the dynamo
  exporter. The trace runs on a padded batch, so that the attention mask is in the graph.
- TorchScript files (``torch.jit.save``): the TorchScript-based exporter, the only one that takes a
  ``ScriptModule``; the batch axis is left open.
- ``torch.export`` programs (``.pt2``): the dynamo exporter, the only one that takes an
  ``ExportedProgram``; its dynamic dimensions stay as the program declares them. It needs
  ``onnxscript``, from the build-only directory of export tools.

``quantize: dynamic``: ONNX Runtime's ``quantize_dynamic``, int8 weights per channel, on the
float32 export. all-MiniLM-L6-v2 on the built-in sentences, smallest cosine to torch's embeddings:
0.956 per channel, 0.859 per tensor (the default), 0.926 with uint8 weights; the float32 export
1.00000. Hence ``none`` is the default, and ``runtime.tolerance.cosine`` decides.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path
from typing import Any

# From this script's directory, first on sys.path (mypy, checking the slugslim package, does not look there).
import onnx_source  # type: ignore[import-not-found]

# A tensor model's (manifest entry, sample inputs, torch's outputs).
Exported = tuple[dict[str, Any], list[Any], list[Any]]
TORCHSCRIPT_OPSET = 17
DYNAMO_OPSET = 18  # the dynamo exporter's lowest


WEIGHTS = "model.onnx.data"  # beside model.onnx


def external_weights(onnx: Path) -> Path | None:
    """Move the weights out of the graph into WEIGHTS beside it, which ONNX Runtime maps from the file
    instead of copying them out of a parsed graph: all-MiniLM-L6-v2's web process peaked at 179 MB so,
    at 216 MB with the weights inside. None when there is no weight worth moving (or no onnx package)."""
    try:
        onnx_package = importlib.import_module("onnx")
    except ImportError:
        return None
    model = onnx_package.load(str(onnx))
    if not any(t.ByteSize() >= 1024 for t in model.graph.initializer):
        return None
    onnx_package.save_model(model, str(onnx), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=WEIGHTS, size_threshold=1024)
    weights = onnx.parent / WEIGHTS
    weights.chmod(0o644)
    return weights


def quantize(source: Path, target: Path) -> None:
    """int8 weights, a scale per output channel; activations quantized at run time."""
    quantization = importlib.import_module("onnxruntime.quantization")
    quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8,
                                  per_channel=True)


def _torchscript_export(torch: Any, model: Any, args: tuple[Any, ...], onnx: Path, **options: Any) -> None:
    """The TorchScript-based exporter: ``dynamo=False`` where torch has both (2.5 on; the default turned in
    2.9), no such argument before."""
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False
    torch.onnx.export(model, args, str(onnx), opset_version=TORCHSCRIPT_OPSET, **options)


def _tokenizer_file(tokenizer: Any, directory: Path, target: Path) -> None:
    """The model's own tokenizer.json, or the one transformers' fast tokenizer makes of its vocabulary."""
    if (directory / "tokenizer.json").is_file():
        shutil.copyfile(directory / "tokenizer.json", target)
    elif getattr(tokenizer, "is_fast", False):
        tokenizer.backend_tokenizer.save(str(target))
    else:
        raise onnx_source.Failure(f"its tokenizer ({type(tokenizer).__name__}) has no tokenizer.json for the "
                                  "`tokenizers` library, and transformers cannot make one")


def _problem_type(config: Any) -> str:
    """The function transformers' text-classification pipeline applies, named as the manifest names it:
    none for regression, sigmoid for multi-label or one label, else softmax."""
    given = str(getattr(config, "problem_type", None) or "")
    if given in ("regression", "multi_label_classification"):
        return given
    return "multi_label_classification" if int(config.num_labels) == 1 else "single_label_classification"


def _scores(np: Any, logits: Any, problem_type: str) -> Any:
    if problem_type == "regression":
        return logits
    if problem_type == "multi_label_classification":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _positional(torch: Any, model: Any, names: list[str]) -> Any:
    """A torch module taking the tokenizer's tensors positionally, giving output 0 of the HF model."""

    class Positional(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True)), return_dict=False)[0]

    return Positional().eval()


def text(torch: Any, np: Any, model: onnx_source.TextModel, source: Path, texts: list[str], onnx: Path,
         tokenizer_json: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export ``model`` to ``onnx``: (its manifest entry without paths, its reference arrays)."""
    transformers = importlib.import_module("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model.directory))
    _tokenizer_file(tokenizer, model.directory, tokenizer_json)
    classify = model.task == "text-classification"
    auto = transformers.AutoModelForSequenceClassification if classify else transformers.AutoModel
    net = auto.from_pretrained(str(model.directory)).eval()
    config = net.config
    limit = onnx_source.max_length(model, int(getattr(tokenizer, "model_max_length", 0) or 0),
                                   int(getattr(config, "max_position_embeddings", 0) or 0))
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    if tokenizer.pad_token is None:
        raise onnx_source.Failure("its tokenizer has no padding token")
    entry: dict[str, Any] = {"task": model.task, "max_length": limit, "inputs": names,
                             "pad_id": int(tokenizer.pad_token_id), "pad_token": str(tokenizer.pad_token)}
    # Two texts of different lengths: the traced graph keeps the attention mask.
    dummy = tokenizer(["a", "a longer text to pad the first one"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    output = "logits" if classify else "last_hidden_state"
    axes[output] = {0: "batch"} if classify else {0: "batch", 1: "sequence"}
    wrapper = _positional(torch, net, names)
    with torch.no_grad():
        _torchscript_export(torch, wrapper, tuple(dummy[n] for n in names), onnx, input_names=names,
                            output_names=[output], dynamic_axes=axes)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    with torch.no_grad():
        out = wrapper(*(encoded[n] for n in names)).float().numpy()
    if classify:
        problem_type = _problem_type(config)
        labels = [str(config.id2label[i]) for i in range(int(config.num_labels))]
        entry.update(labels=labels, problem_type=problem_type)
        return entry, {"out_0": _scores(np, out, problem_type), "labels": np.array(labels)}
    entry.update(pooling=model.pooling, normalize=model.normalize)
    if model.sentence_transformers:
        st = importlib.import_module("sentence_transformers").SentenceTransformer(str(source), device="cpu")
        reference = st.encode(texts, convert_to_numpy=True)
    else:  # a plain encoder: mean pooling over the tokens the mask keeps, as sentence-transformers does
        mask = encoded["attention_mask"].numpy()[..., None].astype(np.float32)
        reference = (out * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return entry, {"out_0": np.asarray(reference, dtype=np.float32)}


def _flat(value: Any, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v, what)]
    if hasattr(value, "detach"):
        return [value]
    raise onnx_source.Failure(f"{what} returns a {type(value).__name__}; the ONNX conversion takes tensors or "
                              "tuples of them")


def _tensor_entry(names: list[str], arrays: list[Any], outputs: list[Any]) -> dict[str, Any]:
    out_names = [f"out_{i}" for i in range(len(outputs))]
    dtypes = {n: str(a.dtype) for n, a in zip(names + out_names, arrays + outputs, strict=True)}
    return {"task": "tensor", "inputs": names, "outputs": out_names, "dtypes": dtypes}


def torchscript(torch: Any, np: Any, file: Path, arrays_for: Any, onnx: Path, what: str) -> Exported:
    """Export a torch.jit.save file: (entry, inputs, torch's outputs). ``arrays_for(names)`` gives the samples."""
    module = torch.jit.load(str(file), map_location="cpu").eval()
    names = [a.name for a in module.forward.schema.arguments[1:]]
    arrays = [a.astype("float32") if a.dtype == "float64" else a for a in arrays_for(names)]
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    with torch.no_grad():
        outputs = [o.detach().numpy() for o in _flat(module(*tensors), what)]
    entry = _tensor_entry(names, arrays, outputs)
    axes = {n: {0: "batch"} for n in [*names, *entry["outputs"]]}
    _torchscript_export(torch, module, tensors, onnx, input_names=names, output_names=entry["outputs"],
                        dynamic_axes=axes)
    return entry, arrays, outputs


def exported(torch: Any, np: Any, file: Path, arrays_for: Any, onnx: Path, what: str) -> Exported:
    """Export a torch.export program: (entry, inputs, torch's outputs). ``arrays_for(names, specs)`` gives
    the samples, ``specs`` being (name, shape with None for a dynamic dimension, numpy dtype)."""
    program = torch.export.load(str(file))
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        value = placeholders[name].meta.get("val")
        if not hasattr(value, "shape"):
            raise onnx_source.Failure(f"{what}: its input {name!r} is not a tensor")
        shape = tuple(d if isinstance(d, int) else None for d in value.shape)
        specs.append((name, shape, str(value.dtype).removeprefix("torch.")))
    arrays = arrays_for(names, specs)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    with torch.no_grad():
        outputs = [o.detach().numpy() for o in _flat(program.module()(*tensors), what)]
    entry = _tensor_entry(names, arrays, outputs)
    torch.onnx.export(program, (), str(onnx), input_names=names, output_names=entry["outputs"],
                      opset_version=DYNAMO_OPSET, dynamo=True, external_data=False, verbose=False)
    return entry, arrays, outputs
