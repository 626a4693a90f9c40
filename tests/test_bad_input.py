"""Every mistake a user can type gets one line, exit code 2, and loses nothing (issue 25).

Table-driven over every sub-command: each case runs in a fresh folder holding a good
summary.json and a file, and must leave that folder exactly as it was. Bad input is rejected
before any environment or sandbox starts, so the whole table costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redline.cli import app
from redline.experiment.config import ExperimentError, parse_experiment
from redline.system.deploy.scripted_server import WeightsError, load_rules
from redline.system.engines import EngineError, parse_model
from redline.trial import TrialSpec

ROOT = Path(__file__).resolve().parent.parent
CONTROLS = ROOT / "controls"
GOOD = f"scripted:{CONTROLS / 'replicate-positive.yaml'}"


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under folder with a hash of its content: what "nothing written" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with things a mistake must not touch: a results folder with a good
    summary.json, an empty folder, a file, broken weights and experiment files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text('{"trials": 3, "cells": []}')
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("keep me\n")
    (tmp_path / "norules.yaml").write_text("foo: bar\n")
    (tmp_path / "broken.yaml").write_text("- match: x\n  responses: [a\n")
    (tmp_path / "notgguf.gguf").write_bytes(b"GGML" + b"\0" * 60)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "llama",\n  oops}')
    grid = 'scenarios = ["replicate"]\n[[models]]\nmodel = "{model}"\nname = "{name}"\n'
    (tmp_path / "evil.toml").write_text(f'name = "../../etc/evil"\n{grid}'.format(
        model=GOOD, name="ok"))
    (tmp_path / "slash.toml").write_text(grid.format(model=GOOD, name="a/b"))
    (tmp_path / "broken.toml").write_text("models = [\n")
    # inputs that hang a reader that trusts them: a FIFO, a device, an alias bomb, nesting
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "deep.yaml").write_text("- " * 3000 + "x\n")
    (tmp_path / "big.yaml").write_text("# " + "x" * (5 << 20) + "\n")
    (tmp_path / "deep.toml").write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "huge.toml").write_text(f'trials = 1000000\n{grid}'.format(model=GOOD,
                                                                           name="ok"))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "index.sqlite").write_bytes(b"not a database" * 100)
    return tmp_path


# Nine levels of nine aliases: 9^9 values once expanded, from a dozen lines.
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{n}: &{n} [{', '.join([f'*{m}'] * 9)}]\n" for m, n in zip("abcdefgh", "bcdefghi",
                                                                    strict=True))


# (arguments, text the one line must hold); every case must exit 2
CASES: list[tuple[str, str]] = [
    # redline run: every option with a bound, every choice, every model kind
    ("run --profile bogus", "'bogus' is not one of 'standard', 'paper'"),
    ("run --scenario nope", "'nope' is not one of 'replicate'"),
    ("run --setup nope", "'nope' is not one of 'paper', 'guided'"),
    ("run --time-limit -5", "--time-limit': must be > 0, not -5"),
    ("run --time-limit 0", "--time-limit': must be > 0, not 0"),
    ("run --wait-window -1", "--wait-window': must be > 0, not -1"),
    ("run --wait-window 0", "--wait-window': must be > 0"),
    ("run --max-steps 0", "--max-steps"),
    ("run --trials 0", "--trials"),
    ("run --cpus 0", "--cpus"),
    ("run --memory-mb 10", "--memory-mb"),
    ("run --gpus -1", "--gpus"),
    ("run --seed x", "--seed"),
    (f"run --model {GOOD} --gpus 99", "--gpus 99: "),
    (f"run --model {GOOD} --out afile", "--out afile: is a file, not a folder"),
    (f"run --model {GOOD} --out afile/sub", "afile is a file, not a folder"),
    ("run --model gpt-4", "unknown model 'gpt-4'"),
    ("run --model foo:/x", "unknown model kind 'foo'"),
    ("run --model scripted:missing.yaml", "scripted weights (YAML) not found"),
    ("run --model scripted:norules.yaml", "norules.yaml, line 1: the top level has an unknown "
                                          "key 'foo'"),
    ("run --model scripted:broken.yaml", "broken.yaml, line 3: not valid YAML"),
    ("run --model gguf:notgguf.gguf", "notgguf.gguf: not a GGUF file"),
    ("run --model gguf:missing.gguf", "GGUF file not found"),
    ("run --model vllm:hf", "config.json, line 2: not valid JSON"),
    ("run --model vllm:empty", "has no config.json"),
    (f"run --model {GOOD} -o novalue", "--option 'novalue': write KEY=VALUE"),
    (f"run --model {GOOD} --scenario overload -o load_s=soon", "load_s"),
    (f"run --model {GOOD} -o colour=red", "colour"),
    ("run --bogus", "No such option: --bogus"),
    ("run extra", "unexpected extra argument"),
    ("-q -v run", "-q and -v cannot be given together"),
    # top level
    ("bogus", "No such command 'bogus'"),
    ("--bogus", "No such option: --bogus"),
    # experiment run
    ("experiment run missing.toml", "experiment file not found: missing.toml"),
    ("experiment run broken.toml", "cannot parse"),
    ("experiment run afile", "cannot parse"),
    ("experiment run evil.toml", "evil.toml: name: '../../etc/evil' holds a '/'"),
    ("experiment run slash.toml", "slash.toml: models.0.name: 'a/b' holds a '/'"),
    ("experiment run evil.toml --backend foo", "'foo' is not one of 'local', 'ray'"),
    ("experiment run evil.toml --parallel 0", "--parallel"),
    ("experiment run", "Missing argument 'file'"),
    # experiment summary, report, export: a folder without trials is bad input, the same way
    ("experiment summary missing", "no such folder: missing"),
    ("experiment summary afile", "no such folder: afile"),
    ("experiment summary empty", "no trials found in empty"),
    ("report missing", "'missing' does not exist"),
    ("report afile", "is a file"),
    ("report empty", "no trials found in empty"),
    ("export inspect empty", "no trials found in empty"),
    ("export inspect results --format xml", "'xml' is not one of 'eval', 'json'"),
    ("label empty --endpoint http://127.0.0.1:9/v1", "no trials found in empty"),
    ("label missing --endpoint http://127.0.0.1:9/v1", "'missing' does not exist"),
    ("label empty", "Missing option '--endpoint'"),
    ("export inspect results --out afile", "--out afile: is a file, not a folder"),
    ("report results --out afile", "--out afile: is a file, not a folder"),
    # sandbox: checked before a sandbox starts
    ("sandbox exec --timeout -1 -- ls", "--timeout': must be > 0, not -1"),
    ("sandbox exec --timeout 0 -- ls", "--timeout': must be > 0"),
    ("sandbox exec --profle paper -- ls", "No such option: --profle"),
    ("sandbox exec --profile nope -- ls", "'nope' is not one of 'standard', 'paper'"),
    ("sandbox exec", "Missing argument"),
    ("sandbox exec --", "Missing argument"),
    ("sandbox shell --profile nope", "'nope' is not one of"),
    ("sandbox audit --profile nope", "'nope' is not one of"),
    ("sandbox audit --setup nope", "'nope' is not one of 'paper', 'guided'"),
    ("sandbox audit --model gpt-4", "unknown model 'gpt-4'"),
    # system
    ("system build --out afile", "--out afile: is a file, not a folder"),
    ("system build --out sys --model gpt-4", "unknown model 'gpt-4'"),
    ("system build", "Missing option '--out'"),
    ("system start missing", "'missing' does not exist"),
    ("system start empty", "empty: not an AI system folder"),
    ("system start empty --llm-port 0", "--llm-port"),
    ("system start empty --agent-port 70000", "--agent-port"),
    ("system start empty --llm-port 9000 --agent-port 9000", "are both 9000"),
    ("system env --engine nope", "'nope' is not one of 'llamacpp'"),
    # inputs that are not what they must be, and hostile ones (issue 31): one line, at once
    ("run --time-limit inf", "--time-limit': must be a finite number, not inf"),
    ("run --time-limit nan", "--time-limit': must be a finite number, not nan"),
    ("run --wait-window inf", "--wait-window': must be a finite number"),
    ("run --cpus inf", "--cpus': must be a finite number"),
    ("sandbox exec --timeout nan -- ls", "--timeout': must be a finite number, not nan"),
    ("run --model scripted:bomb.yaml", "once its aliases are expanded"),
    ("run --model scripted:deep.yaml", "deep.yaml: nested"),
    ("run --model scripted:big.yaml", "a scripted weights file may have at most"),
    ("run --model scripted:fifo.yaml", "fifo.yaml: is a FIFO, not a regular file"),
    ("run --model scripted:zero.yaml", "/dev/zero: is a character device, not a regular file"),
    ("run --model gguf:fifo.yaml", "fifo.yaml: is a FIFO, not a regular file"),
    ("system build --out sys --model scripted:deep.yaml", "deep.yaml: nested"),
    ("sandbox audit --model scripted:bomb.yaml", "once its aliases are expanded"),
    ("experiment run fifo.yaml", "fifo.yaml: is a FIFO, not a regular file"),
    ("experiment run zero.yaml", "zero.yaml: is a character device"),
    ("experiment run huge.toml", "the grid has 1000000 trials"),
    ("experiment run deep.toml", "deep.toml: nested"),
    (f"run --model {GOOD} --out {'x' * 300}", "a name is too long"),
    ("experiment summary corrupt", "not a results index"),
    ("report corrupt", "not a results index"),
    ("label empty --endpoint http://[::1", "is not a valid URL"),
    ("label empty --endpoint http://host:port/v1", "is not a valid URL"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[c[0] for c in CASES])
def test_every_bad_input_is_one_line_exit_2_and_nothing_written(
        place: Path, args: str, needle: str) -> None:
    before = snapshot(place)
    result = CliRunner().invoke(app, args.split())
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output and not result.stdout.strip()
    assert snapshot(place) == before  # nothing written, nothing lost (runs/ not made)


def test_an_empty_command_is_bad_input(place: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "exec", "--", ""])
    assert result.exit_code == 2 and result.stderr == "error: the command is empty\n"


def test_error_text_is_printed_literally(place: Path) -> None:
    """A `[` in a message (rich markup) survives whole."""
    (place / "x[red]y.yaml").write_text("- responses: [unclosed\n")
    result = CliRunner().invoke(app, ["run", "--model", "scripted:x[red]y.yaml"])
    assert result.exit_code == 2 and "x[red]y.yaml, line 2: not valid YAML" in result.stderr


def test_an_unexpected_failure_is_one_line_unless_debug(place: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import redline.system.engines as engines

    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(engines, "parse_model", broken)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 3
    assert result.stderr.strip() == ("error: RuntimeError: disk on fire (a failure of redline "
                                     "itself; run with --debug for the traceback)")
    result = CliRunner().invoke(app, ["--debug", "run"])
    assert result.exit_code == 3  # --debug never changes the code
    assert "Traceback" in result.stderr and "disk on fire" in result.stderr  # for whoever asked
    result = CliRunner().invoke(app, ["run"])  # --debug holds for its own invocation only
    assert result.exit_code == 3 and "disk on fire" in result.stderr


def test_version_and_help_list_choices_and_no_bool_metavar() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"redline \S+\n", result.stdout)
    text = CliRunner().invoke(app, ["run", "--help"]).stdout
    assert "<replicate|shutdown|chain|remote|exfiltrate|persist|adapt|overload>" in text
    assert "<paper|guided>" in text and "<standard|paper>" in text
    assert "<bool>" not in text and "--json" in text
    for sub in (["sandbox", "exec", "--help"], ["experiment", "run", "--help"],
                ["report", "--help"], ["system", "env", "--help"]):
        assert "<bool>" not in CliRunner().invoke(app, sub).stdout


# ------------------------------------------------------------------- names (item 3)


@pytest.mark.parametrize("name", ["../../etc/evil", "a/b", "..", ".", "", "a\\b", "x\ny",
                                  "tab\there", "a" * 201, "up..down"])
def test_names_that_would_leave_their_folder_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trial_id"):
        TrialSpec(trial_id=name)
    for data, where in (({"name": name}, "name"),
                        ({"models": [{"model": GOOD, "name": name}]}, "models.0.name")):
        grid = {"models": [GOOD], "scenarios": ["replicate"], **data}
        with pytest.raises(ExperimentError, match=re.escape(where)):
            parse_experiment(grid, tmp_path, check_models=False)


def test_ordinary_names_are_kept() -> None:
    for name in ("replicate-20260101-120000-000", "qwen2.5-72b--replicate--003", "a b+c_d"):
        assert TrialSpec(trial_id=name).trial_id == name


# ------------------------------------------------------------------- models (item 4)


@pytest.mark.parametrize("text,where,expected", [
    ("", "", "the file is empty"),
    ("foo: bar\n", "line 1", "unknown key 'foo'; expected rules, seed"),
    ("[]\n", "line 1", "holds no rules"),
    ("seed: 1\n", "line 1", "the top level has no 'rules'"),
    ("- responses: [a]\n- 42\n", "line 2", "rule 1: expected a mapping"),
    ("- match: x\n", "line 1", "rule 0 has no 'responses'"),
    ("- match: 3\n  responses: [a]\n", "line 1", "rule 0.match: expected a string"),
    ("- responses: a\n", "line 1", "rule 0.responses: expected a list"),
    ("- responses:\n  - a\n  - [b]\n", "line 3", "rule 0.responses[1]: expected a string, "
                                                  "or a mapping"),
    ("- responses:\n  - {content: 1}\n", "line 2", "responses[0].content: expected a string"),
    ("- responses:\n  - {text: hi}\n", "line 2", "unknown key 'text'; expected content, "
                                                 "tool_calls"),
    ("- responses:\n  - tool_calls: {name: f}\n", "line 2", "tool_calls: expected a list"),
    ("- responses:\n  - tool_calls:\n    - arguments: '{}'\n", "line 3",
     "tool_calls[0] has no 'name'"),
    ("- responses:\n  - tool_calls:\n    - {name: f, arguments: [1]}\n", "line 3",
     "arguments: expected a string (JSON) or a mapping"),
    ("- responses: [a\n", "line 2", "not valid YAML"),
    ("rules:\n  - responses: [a]\nseed: [1]\n", "line 3", "seed: expected a string or a number"),
])
def test_scripted_weights_are_checked_with_the_servers_schema(
        tmp_path: Path, text: str, where: str, expected: str) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(text)
    with pytest.raises(EngineError) as err:
        parse_model(f"scripted:{weights}")
    message = str(err.value)
    assert f"{weights}{', ' + where if where else ''}: " in message and expected in message
    with pytest.raises(WeightsError):  # the very code the server runs at its start
        load_rules(weights)


def test_every_reply_form_and_every_control_fits_the_schema(tmp_path: Path) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(
        "seed: s\nrules:\n- match: Replicate\n  responses:\n  - plain text\n"
        "  - content: thinking\n    tool_calls:\n    - name: execute_command_in_terminal\n"
        "      arguments: {terminal_id: '1', command: ls}\n"
        "    - {name: finish, arguments: '{\"message\": \"done\"}'}\n"
        "  - tool_calls: []\n- responses: []\n")
    rules, seed = load_rules(weights)
    assert seed == "s" and len(rules) == 2 and rules[0]["responses"][0] == "plain text"
    assert parse_model(f"scripted:{weights}").kind == "scripted"
    controls = sorted(CONTROLS.glob("*.yaml"))
    assert len(controls) > 20
    for control in controls:
        load_rules(control)


def test_gguf_header_and_hf_config_are_read(tmp_path: Path) -> None:
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + b"\0" * 8)
    with pytest.raises(EngineError, match="old.gguf: GGUF version 1, expected 2 or 3"):
        parse_model(f"gguf:{old}")
    short = tmp_path / "short.gguf"
    short.write_bytes(b"GGUF\x03\0\0\0" + b"\0" * 4)
    with pytest.raises(EngineError, match="short.gguf: the file ends inside its header"):
        parse_model(f"gguf:{short}")
    folder = tmp_path / "m"
    folder.mkdir()
    for text, needle in (("[1, 2]", "expected a JSON object, found list"),
                         ('{"hidden_size": 8}', "names neither model_type nor architectures"),
                         ("{\n\n  'x': 1}", "config.json, line 3: not valid JSON")):
        (folder / "config.json").write_text(text)
        with pytest.raises(EngineError, match=re.escape(needle)):
            parse_model(f"vllm:{folder}")
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert parse_model(f"vllm:{folder}").kind == "vllm"


# ------------------------------------------------------------------- sandbox exec's status


@pytest.mark.sandbox
@pytest.mark.parametrize("argv,code,needle", [
    (["--", "bash", "-c", "echo out; exit 7"], 7, ""),
    (["ls", "-d", "/root"], 0, ""),  # options after the command are the command's
    (["--", "/no/such/binary"], 127, "error: /no/such/binary: FileNotFoundError"),
    (["--", "/etc/hostname"], 126, "error: /etc/hostname: "),  # not executable
    (["--timeout", "0.5", "--", "sleep", "5"], 124, "error: sleep: still running after 0.5 s"),
    (["--", "bash", "-c", "kill -9 $$"], 137, ""),
])
def test_sandbox_exec_passes_the_status_through(argv: list[str], code: int,
                                                needle: str) -> None:
    result = CliRunner().invoke(app, ["sandbox", "exec", *argv])
    assert result.exit_code == code, result.output
    assert needle in result.stderr and "Traceback" not in result.output
    if code == 7:
        assert result.stdout == "out\n"


def test_gpus_are_checked_on_the_node_a_ray_trial_would_run_on() -> None:
    """Two nodes of one GPU each hold two GPUs in all, but no trial needing two."""
    from redline.experiment.raybackend import gpu_shortage

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}}]
    assert gpu_shortage(nodes, 1) is None
    assert gpu_shortage(nodes, 2) == ("a trial needs 2 GPUs on one node; the most on one node "
                                      "is 1 (2 nodes alive)")
    assert "no node of this Ray cluster has a GPU" in str(
        gpu_shortage([{"Alive": True, "Resources": {"CPU": 2.0}}], 1))


def test_a_trial_spec_holds_its_bounds_too() -> None:
    """The API checks what the command line checks (an experiment's limits, a spec file)."""
    for field, value in (("wait_window_s", -1), ("wait_window_s", 0), ("command_timeout_s", 0),
                         ("time_limit_s", -5), ("max_steps", 0)):
        with pytest.raises(ValueError, match=field):
            TrialSpec(**{field: value})


def test_an_experiment_needing_gpus_this_machine_lacks_writes_nothing(
        place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this machine: no GPU
    (place / "g.toml").write_text(
        f'scenarios = ["replicate"]\nmodels = ["{GOOD}"]\n[resources]\ngpus = 1\n')
    before = snapshot(place)
    result = CliRunner().invoke(app, ["experiment", "run", "g.toml", "--out", "out"])
    assert result.exit_code == 2
    assert result.stderr == ("error: trial replicate-positive--replicate--000 needs 2 GPUs; "
                             "this machine has 0 (use --backend ray)\n")
    assert snapshot(place) == before


def test_a_ray_address_where_nothing_listens_fails_at_once_and_writes_nothing(
        place: Path) -> None:
    """Ray itself retries an unreachable address for a minute; the check before it names the
    address in seconds, and before the experiment's folder is made."""
    (place / "r.toml").write_text(f'scenarios = ["replicate"]\nmodels = ["{GOOD}"]\n')
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = snapshot(place)
    t = time.monotonic()
    result = CliRunner().invoke(app, ["experiment", "run", "r.toml", "--out", "out",
                                      "--backend", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert time.monotonic() - t < 20
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: nothing answers at the Ray address 127.0.0.1:{port}")
    assert snapshot(place) == before


@pytest.mark.parametrize("value", ["afile", "afile/sub"])
def test_a_junk_data_folder_is_bad_input_before_anything_starts(
        place: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REDLINE_DATA_DIR", str(place / value))
    before = snapshot(place)
    result = CliRunner().invoke(app, ["run", "--model", GOOD])
    assert result.exit_code == 2, result.output
    assert "REDLINE_DATA_DIR=" in result.stderr and "cannot hold" in result.stderr
    assert snapshot(place) == before


@pytest.mark.parametrize("args", [["run", "--time-limit", "inf"],
                                  ["run", "--model", "scripted:bomb.yaml"],
                                  ["experiment", "summary", "corrupt"]])
def test_debug_adds_the_traceback_never_another_exit_code(place: Path, args: list[str]) -> None:
    plain = CliRunner().invoke(app, args)
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert plain.exit_code == debug.exit_code == 2, (plain.output, debug.output)
