"""Progress of the training loops (``dna.progress``): the plain line, the tqdm bar on a terminal,
and one line per epoch from the commands and components on tiny runs."""

from __future__ import annotations

import json
import re
import types

import pytest

from dna import progress
from dna.cli import main
from dna.progress import duration, line, reporter
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread per test)

# A resumed run: epochs 4 and 5 of 20 trained here, in 120 s: 60 s an epoch, 15 left.
RESUMED = {"epoch": 5, "epochs": 20, "resumed_from": 3, "elapsed_s": 120.0, "loss": 1.23456,
           "val_top1": 41.23, "images_per_s": 612.4, "seconds": 60.0}
EPOCH_LINE = re.compile(r"^(?P<name>.+?)  epoch (?P<epoch>\d+)/(?P<epochs>\d+)  .*img/s  (ETA|done in) \d")




def test_plain_line_with_eta_of_a_resumed_run():
    assert line("[gen 0] retrain", RESUMED) == \
        "[gen 0] retrain  epoch 5/20  loss 1.235  top-1 41.2%  612 img/s  ETA 15m00s"
    # the ETA counts only the epochs this call trained (not the 3 it resumed after)
    assert progress.eta_s(RESUMED) == pytest.approx(900.0)
    assert progress.eta_s({**RESUMED, "resumed_from": 0}) == pytest.approx(120 / 5 * 15)


def test_line_names_the_block_or_task_and_ends_with_the_time_taken():
    last = {"epoch": 3, "epochs": 3, "resumed_from": 0, "elapsed_s": 75.2, "loss": 0.5, "block": 2,
            "images_per_s": 12.34}
    assert line("[gen 1] supernet", last) == "[gen 1] supernet block 2  epoch 3/3  loss 0.5000  12.3 img/s  done in 1m15s"
    ema = {**RESUMED, "ema_top1": 50.0, "task": "classification"}     # the EMA net's top-1 is the run's
    assert line("transfer", ema).startswith("transfer classification  epoch 5/20  loss 1.235  top-1 50.0%")
    # a dict without timing or metrics still gives a line
    assert line("x", {"epoch": 1, "epochs": 2}) == "x  epoch 1/2"


def test_duration():
    assert [duration(s) for s in (0, 42.4, 60, 252, 3599, 7500)] == ["0s", "42s", "1m00s", "4m12s", "59m59s",
                                                                     "2h05m"]


def test_plain_mode_logs_one_line_per_epoch_through_log():
    got: list[str] = []
    rep = reporter("[gen 0] retrain", log=got.append, tty=False)
    for e in (4, 5):
        rep({**RESUMED, "epoch": e, "elapsed_s": 60.0 * (e - 3)})
    rep.close()
    assert got == [line("[gen 0] retrain", {**RESUMED, "epoch": 4, "elapsed_s": 60.0}),
                   line("[gen 0] retrain", RESUMED)]


def test_default_log_is_stderr_and_a_pipe_gets_plain_lines(capsys):
    with reporter("retrain") as rep:                    # captured stderr is no terminal
        rep(RESUMED)
    out = capsys.readouterr()
    assert out.out == "" and out.err == line("retrain", RESUMED) + "\n"


def test_tty_mode_draws_a_tqdm_bar_and_closes_it(capsys, monkeypatch):
    import tqdm

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    logged: list[str] = []
    bars: list = []
    real = tqdm.tqdm

    def recording(*a, **kw):
        bars.append(real(*a, **kw))
        return bars[-1]
    monkeypatch.setattr(tqdm, "tqdm", recording)
    rep = reporter("[gen 0] retrain", log=logged.append)
    assert rep.tty
    rep({**RESUMED, "epoch": 4, "elapsed_s": 60.0})
    rep(RESUMED)
    assert len(bars) == 1 and bars[0].n == 5 and bars[0].total == 20 and not bars[0].disable
    assert "ETA 15m00s" in str(bars[0])
    rep.close()
    assert rep._bar is None and bars[0].disable        # tqdm marks a closed bar disabled
    err = capsys.readouterr().err
    assert "[gen 0] retrain  epoch 5/20" in err and "612 img/s" in err and logged == []
    # a new loop (here another task) starts a new bar; the last epoch closes it by itself
    rep({"epoch": 1, "epochs": 1, "resumed_from": 0, "elapsed_s": 1.0, "loss": 0.1, "task": "seg"})
    assert len(bars) == 2 and bars[1].disable and rep._bar is None


def test_other_ranks_stay_quiet(monkeypatch):
    got: list[str] = []
    rank = {"r": 1}
    fake = types.SimpleNamespace(is_initialized=lambda: True, get_rank=lambda: rank["r"])
    monkeypatch.setitem(progress.sys.modules, "torch.distributed", fake)
    rep = reporter("b", log=got.append, tty=False)
    rep(RESUMED)
    assert got == []
    rank["r"] = 0
    rep(RESUMED)
    assert len(got) == 1


def test_chain_calls_each_in_order():
    seen: list[tuple[str, int]] = []
    call = progress.chain(lambda m: seen.append(("a", m["epoch"])), None, lambda m: seen.append(("b", m["epoch"])))
    call({"epoch": 7})
    assert seen == [("a", 7), ("b", 7)]


# ----- the call sites on tiny runs -----------------------------------------------------------------
def epoch_lines(text: str, name: str) -> list[tuple[int, int]]:
    """(epoch, epochs) of every progress line of ``name`` in ``text``."""
    out = []
    for raw in text.splitlines():
        m = EPOCH_LINE.search(raw.split("] ", 1)[1] if raw.startswith("[dna ") else raw)
        if m and m["name"] == name:
            out.append((int(m["epoch"]), int(m["epochs"])))
    return out


def tiny_arch_json(tmp_path) -> str:
    from dna.model.arch import Architecture
    from dna.space import get_space
    from dna.space.mbconv import BlockChoice

    s = get_space("mbconv-tiny")
    uri = str(tmp_path / "arch.json")
    Architecture.from_choices(
        s, [BlockChoice(k, 0, (s.ops[0],) * s.blocks[k].cells[0].layers) for k in range(6)]).save(uri)
    return uri


def test_dna_retrain_prints_one_line_per_epoch_on_stderr(tmp_path, capsys):
    argv = ["retrain", tiny_arch_json(tmp_path), "--out", str(tmp_path / "r"), "--epochs", "2", "--train-size", "16",
            "--val-size", "8", "--batch-size", "8", "--steps-per-epoch", "1", "--recipe", "fast", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["epochs"] == 2           # stdout stays the result
    assert epoch_lines(out.err, "retrain") == [(1, 2), (2, 2)]
    assert re.search(r"retrain  epoch 1/2  loss [\d.]+  top-1 [\d.]+%  [\d.]+ img/s  ETA \d", out.err)


@pytest.mark.filterwarnings("ignore:TRANSFER FROM A RANDOMLY")
def test_dna_transfer_prints_one_line_per_epoch(tmp_path, capsys):
    argv = ["transfer", "cls", tiny_arch_json(tmp_path), "--random-init", "--out", str(tmp_path / "t"),
            "--epochs", "2", "--train-size", "16", "--val-size", "8", "--batch-size", "8",
            "--max-train-batches", "1", "--max-val-batches", "1", "--samples", "1", "--device", "cpu"]
    assert main(argv) == 0
    assert epoch_lines(capsys.readouterr().err, "transfer classification") == [(1, 2), (2, 2)]


def test_teacher_component_logs_one_line_per_teacher_epoch(tmp_path, capsys):
    from components import _runtime as rt
    from components.teacher import train_teacher
    from dna.generation import RunConfig
    from tests.test_components import artifact

    cfg = RunConfig.from_dict({
        "root": str(tmp_path / "run"), "teacher": {"model": "tiny"}, "transfer": [],
        "data": {"train_size": 16, "val_size": 8, "rating_size": 8, "batch_size": 8},
        "teacher_train": {"epochs": 2, "steps_per_epoch": 1, "lr": 0.01, "drop_path_rate": 0.0}})
    data = artifact(tmp_path, "data")
    rt.write_json_artifact(data, {"data": cfg.data.to_dict()}, uri=cfg.data.uri)
    train_teacher.python_func(run_config=json.dumps(cfg.to_dict()), generation=0, data=data,
                              teacher=artifact(tmp_path, "teacher"), metrics=artifact(tmp_path, "m"),
                              report=artifact(tmp_path, "r.html"))
    out = capsys.readouterr().out                       # the component's log (rt.log: stdout, timestamped)
    assert epoch_lines(out, "[gen 0] teacher") == [(1, 2), (2, 2)]
    assert re.search(r"^\[dna \d\d:\d\d:\d\d\] \[gen 0\] teacher  epoch 2/2  .*done in", out, re.M)
