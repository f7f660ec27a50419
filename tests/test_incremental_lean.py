"""Lean materialization: dbt parses the project once per process (the parsed manifest is reused
by the next invocations until a project file changes), writes no JSON artifacts, and the
historic flow takes --full-refresh from its command line."""

import importlib.util
import sys
from types import SimpleNamespace

import pytest

from pipelines import dbt
from pipelines.settings import PROJECT_ROOT


class FakeDbt:
    """Stands in for dbtRunner: records each invocation, answers like dbt would."""

    def __init__(self):
        self.calls = []

    def invoke(self, settings, args, family, callbacks=(), manifest=None, write_json=True):
        self.calls.append(
            {"command": args[0], "family": family, "manifest": manifest, "write_json": write_json, "args": args}
        )
        if args[0] == "parse":
            return SimpleNamespace(success=True, exception=None, result=f"manifesto-{len(self.calls)}")
        node = SimpleNamespace(resource_type="model", name=args[2], unique_id=f"model.terceirizados.{args[2]}")
        return SimpleNamespace(
            success=True,
            exception=None,
            result=[SimpleNamespace(node=node, status="success", failures=None, message=None)],
        )

    def commands(self):
        return [call["command"] for call in self.calls]


@pytest.fixture
def fake_dbt(monkeypatch):
    fake = FakeDbt()
    monkeypatch.setattr(dbt, "_invoke", fake.invoke)
    monkeypatch.setattr(dbt, "_manifests", {})
    return fake


def test_the_project_is_parsed_once_per_process_until_a_file_changes(settings, fake_dbt, monkeypatch):
    for model in ("raw", "cleaned", "renamed", "transformed"):
        assert dbt.run_dbt(settings, "build", model, "latest").models == {model: "success"}
    assert fake_dbt.commands() == ["parse", "build", "build", "build", "build"]
    builds = fake_dbt.calls[1:]
    assert {call["manifest"] for call in builds} == {"manifesto-1"}  # the one parsed manifest, reused
    assert all(call["write_json"] is False for call in fake_dbt.calls)  # no manifest.json after each build
    assert all(call["family"] == "latest" for call in fake_dbt.calls)

    # another target folder: its own parse
    dbt.run_dbt(settings, "build", "historic_raw", "historic", full_refresh=True)
    assert fake_dbt.commands()[5:] == ["parse", "build"]
    assert fake_dbt.calls[-1]["args"][-1] == "--full-refresh" and fake_dbt.calls[-1]["manifest"] == "manifesto-6"

    with pytest.raises(ValueError, match="historico"):  # the family is explicit, never guessed
        dbt.run_dbt(settings, "build", "historic_raw", "historico")
    assert len(fake_dbt.calls) == 7

    monkeypatch.setattr(dbt, "_project_fingerprint", lambda: "um arquivo do projeto mudou")
    dbt.run_dbt(settings, "build", "raw", "latest")
    assert fake_dbt.commands()[7:] == ["parse", "build"]
    assert fake_dbt.calls[-1]["manifest"] == "manifesto-8"


def test_the_fingerprint_follows_the_contents_of_the_project(tmp_path, monkeypatch):
    project = tmp_path / "queries"
    (project / "macros").mkdir(parents=True)
    (project / "target").mkdir()
    (project / "macros" / "limpeza.sql").write_text("select 1")
    monkeypatch.setattr(dbt, "DBT_PROJECT_DIR", project)
    first = dbt._project_fingerprint()
    (project / "target" / "manifest.json").write_text("{}")  # what dbt writes does not count
    assert dbt._project_fingerprint() == first
    (project / "macros" / "limpeza.sql").write_text("select 2")
    assert dbt._project_fingerprint() != first


def test_full_refresh_option_of_the_historic_materialization(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "historic_materialize_cli", PROJECT_ROOT / "run" / "historic_materialize.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    received = []
    monkeypatch.setattr(module, "run_flow", lambda flow, parameters: received.append((flow.name, parameters)) or 0)
    for argv, expected in ((["historic_materialize.py"], False), (["historic_materialize.py", "--full-refresh"], True)):
        monkeypatch.setattr(sys, "argv", argv)
        assert module.main() == 0
        assert received.pop() == ("adm_cgu_terceirizados__historic_materialize", {"full_refresh": expected})
    assert {parameter.name: parameter.default for parameter in module.historic_materialize_flow.parameters()} == {
        "full_refresh": False
    }


def test_a_family_parses_from_the_newest_state_of_its_siblings(tmp_path):
    import os

    targets = tmp_path / "dbt_target"
    for family, content, age in (("latest", b"velho", 200), ("historic", b"novo", 100)):
        (targets / family).mkdir(parents=True)
        path = targets / family / dbt.PARTIAL_PARSE_FILE
        path.write_bytes(content)
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    dbt._seed_partial_parse(targets, "docs")  # never parsed: gets the newest
    assert (targets / "docs" / dbt.PARTIAL_PARSE_FILE).read_bytes() == b"novo"
    dbt._seed_partial_parse(targets, "latest")  # older than a sibling's: replaced
    assert (targets / "latest" / dbt.PARTIAL_PARSE_FILE).read_bytes() == b"novo"
    (targets / "historic" / dbt.PARTIAL_PARSE_FILE).write_bytes(b"mais novo")
    os.utime(targets / "historic" / dbt.PARTIAL_PARSE_FILE, (1, 1))  # older than the others now
    dbt._seed_partial_parse(targets, "historic")  # a sibling is newer (the docs copy): taken
    assert (targets / "historic" / dbt.PARTIAL_PARSE_FILE).read_bytes() == b"novo"
    dbt._seed_partial_parse(targets, "latest")  # already the newest: kept
    assert (targets / "latest" / dbt.PARTIAL_PARSE_FILE).read_bytes() == b"novo"


def test_the_background_preparation_parses_once_and_the_build_reuses_it(settings, fake_dbt, monkeypatch):
    """The scheduled run starts dbt's import and parse before the capture's parse; the build that
    comes later waits for it (the manifest's lock) and never parses a second time."""
    import threading

    started, release = threading.Event(), threading.Event()
    invoke = fake_dbt.invoke

    def slow_parse(*args, **kwargs):  # the parse is still running when the build asks for the manifest
        if args[1][0] == "parse":
            started.set()
            release.wait(10)
        return invoke(*args, **kwargs)

    monkeypatch.setattr(dbt, "_invoke", slow_parse)
    interval = sys.getswitchinterval()
    thread = dbt.prepare_in_background(settings, "latest")
    assert started.wait(10) and thread.daemon
    # a shorter switch interval while it runs (the run's thread gets the GIL back sooner)
    assert sys.getswitchinterval() == dbt.PREPARATION_SWITCH_INTERVAL < interval
    threading.Timer(0.3, release.set).start()
    assert dbt.run_dbt(settings, "build", "raw", "latest").models == {"raw": "success"}
    thread.join(10)
    assert not thread.is_alive()
    assert sys.getswitchinterval() == interval
    assert fake_dbt.commands() == ["parse", "build"]
    assert fake_dbt.calls[1]["manifest"] == "manifesto-1"


def test_a_failed_background_preparation_is_left_to_the_build(settings, fake_dbt, monkeypatch):
    """Nothing escapes the thread; the build parses again and fails with dbt's own message."""
    import threading

    escaped = []
    monkeypatch.setattr(threading, "excepthook", lambda hook_args: escaped.append(hook_args.exc_value))
    answers = iter([SimpleNamespace(success=False, exception="projeto inválido", result=None)] * 2)
    monkeypatch.setattr(dbt, "_invoke", lambda *args, **kwargs: next(answers))
    interval = sys.getswitchinterval()
    dbt.prepare_in_background(settings, "latest").join(10)
    assert escaped == []
    assert sys.getswitchinterval() == interval
    with pytest.raises(dbt.DbtBuildError, match="^dbt parse falhou: projeto inválido$"):
        dbt.run_dbt(settings, "build", "raw", "latest")


def test_overlapping_preparations_restore_the_switch_interval_when_the_last_ends(settings, fake_dbt, monkeypatch):
    import threading

    gates = {family: threading.Event() for family in ("latest", "historic")}
    entered = threading.Event()

    def held_parse(settings, args, family, *rest, **kwargs):
        entered.set()
        gates[family].wait(10)
        return SimpleNamespace(success=True, exception=None, result=f"manifesto-{family}")

    monkeypatch.setattr(dbt, "_invoke", held_parse)
    interval = sys.getswitchinterval()
    first = dbt.prepare_in_background(settings, "latest")
    assert entered.wait(10)  # the first parses (the second then waits for it)
    second = dbt.prepare_in_background(settings, "historic")
    gates["latest"].set()
    first.join(10)
    assert not first.is_alive()
    assert sys.getswitchinterval() == dbt.PREPARATION_SWITCH_INTERVAL  # the second still runs
    gates["historic"].set()
    second.join(10)
    assert not second.is_alive()
    assert sys.getswitchinterval() == interval


# -- one dbt invocation for the chain of latest models (pipelines.dbt.ChainBuild) ----------------


def _node(kind, name, reads=()):
    return SimpleNamespace(
        unique_id=f"{kind}.terceirizados.{name}",
        resource_type=kind,
        name=name,
        depends_on=SimpleNamespace(nodes=[f"model.terceirizados.{model}" for model in reads]),
        attached_node=f"model.terceirizados.{reads[0]}" if kind == "test" and reads else None,
    )


CHAIN_NODES = [
    _node("model", "raw"),
    _node("model", "cleaned", ["raw"]),
    _node("test", "values_nulled_cleaned", ["cleaned"]),
    # attached to cleaned but reading transformed too: dbt runs it after transformed
    _node("test", "sum_matches_source_cleaned", ["cleaned", "transformed"]),
    _node("model", "transformed", ["cleaned"]),
    _node("test", "not_null_transformed_ano", ["transformed"]),
]


def _event(name, node=None, status=None, message="", failures=0):
    data = SimpleNamespace(
        node_info=SimpleNamespace(unique_id=node.unique_id) if node else None,
        run_result=SimpleNamespace(status=status, message=message, num_failures=failures),
    )
    return SimpleNamespace(info=SimpleNamespace(name=name, level="debug", msg=""), data=data)


class ScriptedBuild:
    """Stands in for dbt's build of the chain: fires NodeStart/NodeFinished for each node of
    ``script`` (node, status[, failures]), pausing before the node named in ``pause_before``
    until ``go`` is set, then answers like dbtRunner."""

    def __init__(self, script, pause_before=None, exception=None, silent=(), crash=()):
        import threading

        self.script, self.pause_before, self.exception = script, pause_before, exception
        self.silent, self.crash = set(silent), set(crash)  # no events at all / an exception in dbt's worker
        self.go, self.paused = threading.Event(), threading.Event()
        self.builds = []

    def invoke(self, settings, args, family, callbacks=(), manifest=None, write_json=True):
        self.builds.append(args)
        results = []
        for node, status, *failures in self.script:
            if node.name == self.pause_before:
                self.paused.set()
                assert self.go.wait(10)
            if node.name not in self.silent:
                for callback in callbacks:
                    callback(_event("NodeStart", node))
                    if node.name in self.crash:
                        crashed = _event("GenericExceptionOnRun", node)
                        crashed.data.exc = "conexão perdida"
                        callback(crashed)
                    else:
                        callback(_event("NodeFinished", node, status, f"{node.name} {status}", *failures))
            results.append(
                SimpleNamespace(
                    node=node, status=status, message=f"{node.name} {status}", failures=(failures or [0])[0]
                )
            )
        success = not any(status in ("error", "fail") for _, status, *_ in self.script)
        return SimpleNamespace(success=success, exception=self.exception, result=None if self.exception else results)


@pytest.fixture
def chain_of(settings, monkeypatch):
    manifest = SimpleNamespace(nodes={node.unique_id: node for node in CHAIN_NODES})
    monkeypatch.setattr(dbt, "parsed_manifest", lambda *args, **kwargs: manifest)

    def start(script, **options):
        scripted = ScriptedBuild(script, **options)
        monkeypatch.setattr(dbt, "_invoke", scripted.invoke)
        names = {model: f"tarefa_{model}" for model in ("raw", "cleaned", "transformed")}
        chain = dbt.ChainBuild(settings, ("raw", "cleaned", "transformed"), "latest", names).start()
        return chain, scripted

    return start


def test_a_model_of_the_chain_is_reported_once_dbt_has_moved_past_it(chain_of):
    import threading

    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    script = [
        (raw, "success"),
        (cleaned, "success"),
        (nulled, "warn", 3),
        (transformed, "success"),
        (summed, "pass"),
        (ano, "pass"),
    ]
    chain, scripted = chain_of(script, pause_before="transformed")
    assert chain.wait("raw").models == {"raw": "success"}  # cleaned started: raw is done
    assert scripted.paused.wait(10)
    answer = []
    waiting = threading.Thread(target=lambda: answer.append(chain.wait("cleaned")))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not answer  # transformed has not started: cleaned's tests may still run
    scripted.go.set()
    waiting.join(10)
    [outcome] = answer
    assert outcome.models == {"cleaned": "success"} and outcome.warnings == {"values_nulled_cleaned": 3}
    last = chain.wait("transformed")
    # the test attached to cleaned that reads transformed too is transformed's, and ran after it
    assert last.models == {"transformed": "success"} and last.failures == {} and chain.ended
    assert scripted.builds == [
        [
            "build",
            "--select",
            "raw cleaned transformed",
            "--indirect-selection",
            "buildable",
            "--exclude",
            "tag:verificado_antes_do_commit",
        ]
    ]


def test_a_failed_test_of_the_chain_fails_its_model_after_dbt_ended(chain_of):
    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    # the test reading cleaned and transformed fails: dbt runs it after transformed, whose task fails
    chain, _ = chain_of(
        [
            (raw, "success"),
            (cleaned, "success"),
            (nulled, "pass"),
            (transformed, "success"),
            (summed, "fail", 2),
            (ano, "pass"),
        ]
    )
    assert chain.wait("cleaned").failures == {}
    with pytest.raises(
        dbt.DbtBuildError, match=r"^dbt build --select transformed falhou: sum_matches_source_cleaned: "
    ):
        chain.wait("transformed")
    assert chain.ended


def test_a_model_the_chain_never_built_fails_its_task(chain_of):
    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    chain, _ = chain_of([(raw, "success"), (cleaned, "error")])
    assert chain.wait("raw").models == {"raw": "success"}
    with pytest.raises(dbt.DbtBuildError, match="^dbt build --select cleaned falhou: cleaned: cleaned error$"):
        chain.wait("cleaned")
    with pytest.raises(
        dbt.DbtBuildError, match=r"transformed: não construído: o dbt parou antes \(cleaned: cleaned error\)"
    ):
        chain.wait("transformed")


def test_dbt_unable_to_run_fails_every_model_of_the_chain(chain_of):
    chain, _ = chain_of([], exception=RuntimeError("perfil inválido"))
    for model in ("raw", "cleaned", "transformed"):
        with pytest.raises(dbt.DbtBuildError, match="^dbt build não pôde rodar: perfil inválido$"):
            chain.wait(model)


def test_each_flow_run_has_its_own_chain(settings, chain_of):
    raw, cleaned, *_ = CHAIN_NODES
    chain_of([(raw, "success"), (cleaned, "success")])
    names = {"raw": "r", "cleaned": "c"}
    first = dbt.chain_build(settings, "execucao-1", ("raw", "cleaned"), "latest", names)
    assert dbt.chain_build(settings, "execucao-1", ("raw", "cleaned"), "latest", names) is first
    first.wait("cleaned")
    second = dbt.chain_build(settings, "execucao-2", ("raw", "cleaned"), "latest", names)
    assert second is not first
    second.wait("cleaned")
    assert ("execucao-1", "latest") not in dbt._chains  # an ended run's build is forgotten


def test_a_test_reading_a_source_too_belongs_to_the_last_model(chain_of):
    """dbt orders such a test only before the models downstream of all it reads: it may run
    after later models started, so it is reported by the last model's task, never lost."""
    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    quarantine = _node("test", "quarantine_matches_cleaned", ["cleaned"])
    quarantine.depends_on.nodes.append("source.terceirizados.raw.terceirizados_quarentena")
    CHAIN_NODES.append(quarantine)
    try:
        chain, _ = chain_of([(raw, "success"), (cleaned, "success"), (transformed, "success"), (quarantine, "fail", 4)])
        assert chain.wait("cleaned").failures == {}
        with pytest.raises(dbt.DbtBuildError, match="transformed falhou: quarantine_matches_cleaned: quarantine"):
            chain.wait("transformed")
    finally:
        CHAIN_NODES.remove(quarantine)


def test_a_node_that_crashed_in_dbt_fails_its_model_after_dbt_ended(chain_of):
    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    chain, _ = chain_of([(raw, "success"), (cleaned, "success"), (nulled, "error")], crash={"values_nulled_cleaned"})
    with pytest.raises(dbt.DbtBuildError, match="cleaned falhou: values_nulled_cleaned: "):
        chain.wait("cleaned")
    assert chain.ended


def test_a_failure_dbt_reports_only_at_the_end_fails_the_last_model(chain_of):
    """A hook's error (no event of its own) or any failure that no earlier task reported."""
    raw, cleaned, nulled, summed, transformed, ano = CHAIN_NODES
    hook = SimpleNamespace(
        unique_id="operation.terceirizados.terceirizados-on-run-end-0",
        resource_type="operation",
        name="terceirizados-on-run-end-0",
        depends_on=SimpleNamespace(nodes=[]),
    )
    CHAIN_NODES.append(hook)
    try:
        chain, _ = chain_of(
            [(raw, "success"), (cleaned, "success"), (transformed, "success"), (hook, "error")],
            silent={"terceirizados-on-run-end-0"},
        )
        assert chain.wait("raw").failures == {} and chain.wait("cleaned").failures == {}
        with pytest.raises(dbt.DbtBuildError, match="terceirizados-on-run-end-0: terceirizados-on-run-end-0 error"):
            chain.wait("transformed")
    finally:
        CHAIN_NODES.remove(hook)


def test_events_of_nodes_the_chain_does_not_know_move_nothing(chain_of):
    """A unit test or another invocation's node starting does not release a waiting model."""
    import threading

    raw, cleaned, *_ = CHAIN_NODES
    stranger = _node("unit_test", "teste_de_outro_projeto")
    chain, scripted = chain_of([(raw, "success"), (stranger, "pass"), (cleaned, "success")], pause_before="cleaned")
    assert scripted.paused.wait(10)
    answer = []
    waiting = threading.Thread(target=lambda: answer.append(chain.wait("raw")))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # the stranger started, but no node of a later model
    scripted.go.set()
    waiting.join(10)
    assert answer[0].models == {"raw": "success"}
