"""What the randomized crash campaign (scripts/crash_campaign.py) found, each as a
deterministic test: a command killed (or interrupted) at the moment the campaign hit,
then run again to completion, must leave the store as a run never interrupted would.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import crashkit as ck
from recordstore import Store


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small crashkit home, imported (run 1) and migrated (run 2), and the same store
    with run 2 restored (run 3) by a restore never interrupted."""
    root = tmp_path_factory.mktemp("campaign")
    home = ck.make_home(root / "home", notes=60, logs=2, lines=20, lists=2, items=10)
    registry = ck.write_registry(root / "registry.py")
    migrated = root / "migrated.db"
    env = ck.child_env(CRASHKIT_SLEEP="0")
    for args in (["import", home], ["migrate"]):
        done = ck.run_store(migrated, registry, *args, env=env)
        assert done.returncode == 0, done.stderr
    ck.checkpoint(migrated)
    restored = ck.copy_store(migrated, root / "restored.db")
    done = ck.run_store(restored, registry, "restore", "--run", "2", env=env)
    assert done.returncode == 0, done.stderr
    return {"home": home, "registry": registry, "migrated": migrated, "restored": restored}


def test_a_restore_killed_after_its_commit_then_run_again_backs_up_nothing_twice(
    small: dict[str, Path], tmp_path: Path
) -> None:
    """Killed after its one transaction committed, before its run was marked finished:
    the records are back. Running the same restore again used to restore every record a
    second time over itself, backing each up again (the campaign: 3,050 backups more
    than a restore never interrupted); now it finds them restored and leaves them."""
    db = ck.copy_store(small["migrated"], tmp_path / "store.db")
    registry = small["registry"]
    ended = ck.finish(ck.spawn_store(db, registry, "restore", "--run", "2",
                                     env=ck.child_env(CRASHKIT_CRASH="before-finish", CRASHKIT_SLEEP="0")))
    assert ended.returncode == -9, ended.stderr
    assert ck.records_of(db) == ck.records_of(small["restored"])
    again = ck.run_store(db, registry, "restore", "--run", "2", env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert again.returncode == 0, again.stderr
    assert ck.records_of(db) == ck.records_of(small["restored"])
    signature = [(b["key"], b["version"], b["payload"], b["reason"]) for b in ck.backups_of(db)]
    assert signature == [(b["key"], b["version"], b["payload"], b["reason"]) for b in ck.backups_of(small["restored"])]
    # and the killed restore, which did the work, can still be undone
    with Store(db, registry=str(registry)) as store:
        killed, rerun = [r for r in store.history() if r.kind == "restore"]
        assert (killed.outcome, rerun.outcome) == ("interrupted", "ok")
        store.restore(run=killed.id)
    assert ck.records_of(db) == ck.records_of(small["migrated"])


#: What the ``store`` script runs (its console entry point), after a finder that raises
#: KeyboardInterrupt, as a Ctrl-C would, when the module named in argv[1] is loaded.
CTRL_C_WHILE_LOADING = """\
import sys

LANDS_IN = sys.argv[1]

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == LANDS_IN:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv[1:] = sys.argv[2:]
from recordstore._command import main
sys.exit(main())
"""


@pytest.mark.parametrize("module", ["recordstore.errors", "recordstore.registry", "dataclasses"])
def test_ctrl_c_while_the_package_loads_is_one_line(module: str, tmp_path: Path) -> None:
    """Ctrl-C in a command's first tens of milliseconds, while the ``recordstore``
    package itself was loading (the campaign's Ctrl-C at 37 and 66 ms: in its errors, in
    its registry's imports), gave a traceback through the modules being loaded and the
    exit code of a process killed by SIGINT; now the package loads nothing itself, so
    the command's own handling takes it: one line, exit 130."""
    argv = [sys.executable, "-c", CTRL_C_WHILE_LOADING, module, "--db", str(tmp_path / "store.db"), "status"]
    done = subprocess.run(argv, capture_output=True, text=True, env=ck.child_env(), timeout=120)
    assert (done.returncode, done.stderr) == (130, "store: interrupted\n")
    assert done.stdout == ""


def test_the_history_of_an_import_killed_outright_says_what_it_stored(small: dict[str, Path], tmp_path: Path) -> None:
    """An import killed with SIGKILL saved no counts (it saves them at its end, or when
    Ctrl-C stops it): ``store history`` showed "-" for a run that had stored records,
    before the next writer and after, and the counts of the killed run and its rerun
    did not add up to an uninterrupted import's (the campaign: 4,756 records short). Now
    the history says what it stored, by domain, as it does for an import Ctrl-C stopped."""
    db = tmp_path / "store.db"
    registry = small["registry"]
    env = ck.child_env(CRASHKIT_CRASH="import-commit:3", CRASHKIT_IMPORT_BATCH="20", CRASHKIT_SLEEP="0")
    ended = ck.finish(ck.spawn_store(db, registry, "import", small["home"], "--jobs", "0", env=env))
    assert ended.returncode == -9, ended.stderr
    stored = dict(collections.Counter(row.domain for row in ck.records_of(db).values()))
    assert sum(stored.values()) == 40  # two batches of 20 committed, the third not

    def history() -> tuple[str, dict[str, Any], str]:
        shown = ck.run_store(db, registry, "history", "--json", env=ck.child_env())
        assert shown.returncode == 0, shown.stderr
        first = json.loads(shown.stdout)[0]
        table = ck.run_store(db, registry, "history", env=ck.child_env(COLUMNS="200")).stdout
        return first["outcome"], first["counts"], table

    outcome, counts, table = history()  # nothing has taken the store over yet
    assert (outcome, counts) == ("interrupted", {"stored": stored})
    assert "stored 40 before it stopped" in table
    again = ck.run_store(db, registry, "import", small["home"], env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert again.returncode == 0, again.stderr
    outcome, counts, table = history()  # taken over: kept in its run
    assert (outcome, counts) == ("interrupted", {"stored": stored})
    assert "stored 40 before it stopped" in table
    with Store(db, registry=str(registry)) as store:
        rerun = store.history()[-1].counts["domains"]
    imported = {d: stored.get(d, 0) + c["imported"] for d, c in rerun.items()}
    assert imported == collections.Counter(row.domain for row in ck.records_of(small["migrated"]).values())


#: Added to crashkit's registry: Ctrl-C arrives while the store closes, once the
#: command's run has finished (closing takes ~12 ms after a restore of 3,000 records:
#: the last connection checkpoints the WAL).
CTRL_C_WHILE_CLOSING = '''

def _ctrl_c_while_closing():
    import recordstore.store

    close = recordstore.store.Store.close

    def pressed_meanwhile(self):
        os.kill(os.getpid(), signal.SIGINT)
        close(self)

    recordstore.store.Store.close = pressed_meanwhile


_ctrl_c_while_closing()
'''


@pytest.mark.parametrize("args", [["restore", "--run", "2"], ["prune-backups", "--before", "3"]], ids=["restore", "prune"])
def test_ctrl_c_after_a_restore_or_prune_finished_does_not_say_nothing_was_written(
    small: dict[str, Path], tmp_path: Path, args: list[str]
) -> None:
    """Ctrl-C while the command closed the store, its run finished: it said "it is one
    transaction: nothing of it was written", though the restore (or prune) had
    committed and its run was recorded "ok" (so a user would run it again). Now it says
    that the run finished and its work is kept."""
    db = ck.copy_store(small["migrated"], tmp_path / "store.db")
    registry = tmp_path / "registry.py"
    registry.write_text(ck.REGISTRY_SOURCE + CTRL_C_WHILE_CLOSING, encoding="utf-8")
    done = ck.run_store(db, registry, *args, env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert done.returncode == 130
    assert done.stderr == "store: interrupted after run 3 finished: all of its work is kept\n"
    with Store(db, registry=str(small["registry"])) as store:
        assert [(r.kind, r.outcome) for r in store.history()][-1] == (args[0].split("-")[0], "ok")
    if args[0] == "restore":
        assert ck.records_of(db) == ck.records_of(small["restored"])
    else:
        assert ck.backups_of(db) == []


#: Added to crashkit's registry: the first time the importing process takes back a
#: chunk to parse itself (a cancelled future, which waits among the executor's pending
#: ones until a worker has taken those ahead of it), one of its workers is killed, as
#: the OOM killer would
#: (with CAMPAIGN_KILL_A_WORKER set).
KILL_A_WORKER_AFTER_A_STEAL = '''

def _kill_a_worker_after_a_steal():
    import multiprocessing

    import recordstore.importer

    steal = recordstore.importer._steal

    def steal_then_kill(queued):
        # Two chunks or more waiting ahead of the one taken back: it stays pending until
        # a worker has taken both, which the one left will not do before the executor
        # has seen the other die.
        waiting = [c for c in queued if c.outcomes is None and not (c.future.running() or c.future.done())]
        chunk = steal(queued)
        if chunk is not None and len(waiting) >= 3 and os.environ.pop("CAMPAIGN_KILL_A_WORKER", None):
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
        return chunk

    recordstore.importer._steal = steal_then_kill


_kill_a_worker_after_a_steal()
'''


def test_a_worker_killed_during_a_reimport_ends_the_command_with_one_line(tmp_path: Path) -> None:
    """A worker of a re-import killed (the OOM killer) while the importing process had
    taken a chunk back to parse itself: Python 3.11's executor thread died of an
    InvalidStateError (a 12-line traceback), the other worker was left blocked sending
    a result nobody read, and the command, having said its one line, waited for it for
    ever (the campaign: half the trials). Now it ends: one line, exit 3, and the import
    run again gives the store an uninterrupted one would."""
    home = ck.make_home(tmp_path / "home", notes=1500, logs=2, lines=20, lists=2, items=10)
    home2 = ck.edit_home(home, tmp_path / "home2")
    registry = tmp_path / "registry.py"
    registry.write_text(ck.REGISTRY_SOURCE + KILL_A_WORKER_AFTER_A_STEAL, encoding="utf-8")
    db, reference = tmp_path / "store.db", tmp_path / "reference.db"
    for path in (db, reference):
        with Store(path, registry=str(registry)) as store:
            assert store.import_paths(home, jobs=0).ok
    with Store(reference, registry=str(registry)) as store:
        assert store.import_paths(home2, jobs=0).ok

    env = ck.child_env(CRASHKIT_SLEEP="0", CRASHKIT_PARSE_SLEEP="0.002", CAMPAIGN_KILL_A_WORKER="1")
    proc = ck.spawn_store(db, registry, "import", home2, "--jobs", "2", env=env)
    try:
        ended = ck.finish(proc, timeout=90)
    except subprocess.TimeoutExpired:
        ck.kill9(proc)
        pytest.fail("the import never ended once its worker was killed")
    assert ended.returncode == 3, ended.stderr
    assert ended.stderr.startswith("store: error: a worker process of the import died") and ended.stderr.count("\n") == 1
    again = ck.run_store(db, registry, "import", home2, env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert again.returncode == 0, again.stderr
    assert ck.records_of(db) == ck.records_of(reference)
    assert ck.files_of(db) == ck.files_of(reference)
    signature = collections.Counter((b["key"], b["version"], b["payload"]) for b in ck.backups_of(db))
    assert signature == collections.Counter((b["key"], b["version"], b["payload"]) for b in ck.backups_of(reference))
