"""What a run needs before its loop: the method checked, the base and the adapter to start from, the
records split into train and eval, the model loaded and wrapped, and the precision it computes in.

Apart from sft.py (the loop) so that the cheap checks (runs.create, estimate, stopping) import them
without importing the loop (tests/test_layers.py: no import circle).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json
from tunelab.models import registry
from tunelab.train.config import TrainConfig, tuning

QLORA_CPU = ("QLoRA needs a CUDA GPU: bitsandbytes 4-bit quantisation does not run on CPU; "
             "use --method lora instead")

def check_method(method: str) -> None:
    """Refuse what cannot run here before anything heavy is loaded."""
    if method == "qlora":
        import torch

        if not torch.cuda.is_available():
            raise TuneLabError(QLORA_CPU)
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TuneLabError("QLoRA needs the bitsandbytes package: pip install bitsandbytes")


def base_and_init(cfg: TrainConfig) -> tuple[str, str | None]:
    """(base MODEL string, run id whose adapter to start from or None); a run id as model continues its adapter."""
    init = cfg.method.init_adapter or None
    ref = registry.resolve(cfg.model.model)
    if ref.kind == "run":
        init = init or cfg.model.model
    if init:
        parent = registry.resolve(init)
        if parent.kind != "run":
            raise TuneLabError(f"init_adapter {init!r} is not a run with an adapter")
        if tuning(cfg) == "full":
            raise TuneLabError("full fine-tuning starts from whole weights: `tunelab export RUN OUT --merge` first")
        return read_json(Path(parent.path) / "output.json")["base"], init
    m = cfg.model.model
    # A folder path is stored absolute so the run's output.json resolves from any working directory.
    return (m if ref.name == m or not Path(m).exists() else str(Path(m).resolve())), None


def load_records(cfg: TrainConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) records: eval from eval_data or a seeded eval_split of the dataset."""
    d = cfg.data
    if not d.data:
        raise TuneLabError("no dataset given: pass --data NAME (see `tunelab data list`)")
    records = store.read(d.data, d.data_version).to_pylist()[: d.max_records or None]
    if d.eval_data:
        return records, store.read(d.eval_data, d.eval_data_version).to_pylist()
    if d.eval_split > 0:
        idx = list(range(len(records)))
        random.Random(cfg.training.seed).shuffle(idx)
        n = max(1, int(len(records) * d.eval_split))
        held = set(idx[:n])
        return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]
    return records, []


def load_model(cfg: TrainConfig, base: str, init: str | None, device, checkpointing: bool = False):
    """The model with its trainable part wrapped according to the method.

    checkpointing: gradient (activation) checkpointing, each decoder layer recomputed in the backward pass.
    """
    import torch
    from peft import LoraConfig, PeftModel, PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import check_safetensors, hf_dir

    m, dtype = cfg.method, getattr(torch, cfg.model.dtype)
    folder = check_safetensors(hf_dir(base))
    adapter = check_safetensors(registry.resolve(init).adapter, adapter=True) if init else None
    kw = {"dtype": dtype, "use_safetensors": True}
    if m.method == "qlora":
        from transformers import BitsAndBytesConfig

        kw = {"dtype": torch.bfloat16, "device_map": {"": device}, "use_safetensors": True,
              "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                        bnb_4bit_use_double_quant=True,
                                                        bnb_4bit_compute_dtype=torch.bfloat16)}
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kw)
    model.config.use_cache = False
    if checkpointing:  # non-reentrant: no inputs that require grad needed, so PEFT's frozen embeddings are fine
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if m.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if init:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    if tuning(cfg) == "full":
        return model
    if m.method == "ptuning":
        return get_peft_model(model, PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=m.num_virtual_tokens,
                                                         encoder_hidden_size=m.encoder_hidden_size))
    targets = "all-linear" if m.lora_target == "all-linear" else [t.strip() for t in m.lora_target.split(",") if t.strip()]
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=m.lora_r, lora_alpha=m.lora_alpha,
                                            lora_dropout=m.lora_dropout, target_modules=targets))


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): then bf16 autocast pays.

    Read from /proc/cpuinfo's flags: psutil does not list CPU features, and torch's
    get_cpu_capability() names the vector width (AVX512), not whether bf16 dot products exist.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(cfg: TrainConfig, device_type: str):
    """The autocast dtype for this run's forward passes, or None for plain float32.

    Only a float32 model is autocast (bf16/fp16 weights or QLoRA already compute low precision).
    """
    import torch

    setting = cfg.training.mixed_precision
    if setting == "no" or cfg.model.dtype != "float32" or cfg.method.method == "qlora":
        return None
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if setting == "bf16" or native_bf16_cpu() else None


def autocast(device_type: str, dtype):
    """torch.autocast to dtype on device_type, or a no-op context when dtype is None."""
    import torch

    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def cast_frozen(model, dtype) -> int:
    """Hold every frozen weight in the autocast dtype, and keep LoRA inputs in it; returns how many were cast.

    For a LoRA or P-tuning run under bf16 autocast. The frozen Linear weights were copied to bf16 in
    every forward (autocast caches its casts only for weights that require grad). The embedding
    (SmolLM2: tied to the lm_head, 28M parameters) and the norms stayed float32, so the residual
    stream and every RMSNorm output were float32, and autocast cast them to bf16 again in front of
    each Linear: 14-22% of a step's CPU time was aten::copy_ (bench/RESULTS.md, profile). With all
    of them in bf16 the activations are bf16 from the embedding on (RMSNorm still computes its
    variance in float32, as the model's code does); the trainable weights (LoRA A/B, the prompt
    encoder) stay float32 and autocast casts them once per step. As LLaMA-Factory does on a GPU
    (a bf16 base, float32 trainables). PEFT casts a LoRA layer's input to its float32 weight before
    the matmul that autocast runs in bf16 anyway: that copy (kept for the backward) is turned off.

    transformers maps the safetensors file into memory and the float32 weights are views of it:
    casting replaces every frozen tensor, so the mapping is released and the weights are held once.
    """
    import torch

    n = 0
    with torch.no_grad():
        for p in model.parameters():
            if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
                n += 1
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
    return n


# accelerate's distributed types that shard over GPUs and have no CPU mode (accelerate 1.16): on a machine
# without CUDA the shipped FSDP example fails inside FSDP's init ("sync_module_states ... not supported on
# cpu"), the same config with that off silently trains as plain DDP (MULTI_CPU), and DeepSpeed exits 1.
GPU_ONLY_PARALLEL = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}


def accelerate_kind(path: str | Path) -> str:
    """An accelerate config file's distributed_type ("MULTI_GPU", "FSDP", "DEEPSPEED"...), by accelerate's own loader."""
    from accelerate.commands.config.config_args import load_config_from_file

    kind = getattr(load_config_from_file(str(path)), "distributed_type", None)
    return str(getattr(kind, "value", kind) or "NO")


def check_parallel(asked: str | None, cuda: bool, got: str | None = None) -> None:
    """Refuse, in one line, an accelerate config's distributed_type this machine cannot run as asked.

    asked: the config's distributed_type ("FSDP", "MULTI_GPU"...); got: what accelerate set up in the
    worker (None before launch). DDP configs (MULTI_GPU) run over gloo on CPUs, so only the GPU-only
    kinds are checked.
    """
    kind = str(asked or "").upper()
    name = GPU_ONLY_PARALLEL.get(kind)
    if not name:
        return
    if not cuda:
        raise TuneLabError(f"{name} (distributed_type: {kind}) needs CUDA GPUs and none is visible: on CPUs use "
                           "examples/accelerate_ddp.yaml or leave out --accelerate-config (DDP over gloo)")
    if kind == "DEEPSPEED":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise TuneLabError("DeepSpeed is not installed: pip install deepspeed")
    if got is not None and got.upper() != kind:
        raise TuneLabError(f"the accelerate config asks for {name} but accelerate set up {got}: "
                           "check its distributed_type and use_cpu")
