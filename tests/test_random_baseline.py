"""The random-architecture baseline: the draw's budget, its reuse, and the summary's comparison."""

from __future__ import annotations

import os

import pytest

from dna import storage
from dna.costs import count_params
from dna.errors import DnaError
from dna.generation import RetrainSettings, RunConfig
from dna.layout import generation
from dna.model.arch import Architecture
from dna.model.efficientnet import build_model
from dna.random_baseline import (
    ArchCosts,
    RandomBaselineConfig,
    random_baseline_step,
    sample_random_arch,
)
from dna.run_summary import comparison, teacher_trend
from dna.space import get_space
from tests.helpers import one_thread, tiny_data  # noqa: F401 (fixture)

FAST = RetrainSettings(epochs=1, opt="adamw", lr=3e-3, sched="cosine", steps_per_epoch=2, drop_rate=0.0,
                       drop_path_rate=0.0, label_smoothing=0.0)


@pytest.mark.parametrize("target,seed", [(190_000, 0), (250_000, 1), (400_000, 2)])
def test_draw_is_within_ten_percent_and_counted_like_the_built_model(target, seed):
    space = get_space("mbconv-tiny")
    draw = sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=target, resolution=32,
                                                   seed=seed))
    assert 0.9 * target <= draw["params"] <= 1.1 * target
    built = build_model(Architecture.from_choices(space, draw["choices"]))
    assert count_params(built) == draw["params"]          # the cost code is the model's own
    again = sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=target, resolution=32,
                                                    seed=seed))
    assert again["choices"] == draw["choices"]             # seeded


def test_draw_refuses_a_budget_the_space_cannot_meet():
    with pytest.raises(DnaError, match=r"no random architecture .* 5,000 params .* in 200 draws"):
        sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=5000, max_tries=200))
    with pytest.raises(DnaError, match="tolerance=1.5"):
        sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=5000, tolerance=1.5))
    with pytest.raises(DnaError, match="target_params=0"):
        sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=0))


def _searched(root: str, g: int) -> str:
    """A stand-in for generation ``g``'s search/arch.json (a drawn architecture at 32 px)."""
    space = get_space("mbconv-tiny")
    draw = sample_random_arch(RandomBaselineConfig(space="mbconv-tiny", target_params=250_000, seed=9))
    uri = generation(root, g).search_arch
    Architecture.from_choices(space, draw["choices"]).save(uri)
    return uri


def test_step_scales_before_the_last_generation_and_reuses_a_finished_baseline(tmp_path):
    root = str(tmp_path / "run")
    cfg = RunConfig(root=root, generations=2, data=tiny_data(resolution=32), retrain=FAST, transfer=[])
    searched = Architecture.load(_searched(root, 0))
    first = random_baseline_step(cfg, 0)
    gen = generation(root, 0)
    drawn = Architecture.load(gen.random_arch)
    target = ArchCosts(get_space("mbconv-tiny"), 32).params(searched.choices)
    assert drawn.extra["random_baseline"]["target_params"] == target
    assert abs(drawn.extra["random_baseline"]["params"] - target) <= 0.1 * target
    assert drawn.choices != searched.choices
    assert first["scaled"] and first["trained_arch"] == gen.random_scaled_arch
    assert first["dir"] == gen.random_scaled_retrain and not storage.exists(gen.random_retrain)
    assert Architecture.load(gen.random_scaled_arch).extra["scale"]["to"] == "b1"
    assert first["metrics"]["status"] == "trained" and storage.exists(gen.random_scaled_files.model)
    stamp = os.path.getmtime(gen.random_arch)
    again = random_baseline_step(cfg, 0)
    assert again["metrics"]["status"] == "cached" and os.path.getmtime(gen.random_arch) == stamp
    # the last generation: trained at its own size, as the final net is
    _searched(root, 1)
    last = random_baseline_step(cfg, 1)
    assert not last["scaled"] and last["trained_arch"] == generation(root, 1).random_arch


def _summary(teachers: list[float], final: float, rnd: float, scaled_epochs: int = 6, teacher_epochs: int = 10):
    gens = []
    for i, t in enumerate(teachers):
        g: dict = {"generation": i, "teacher": {"top1": t, "params": 500_000, "epochs": teacher_epochs} if i == 0
                   else {"model": f"gen{i - 1}/scaled/arch.json"}}
        if i < len(teachers) - 1:
            g["scaled"] = {"metrics": {"top1": teachers[i + 1], "params": 300_000, "epochs": scaled_epochs}}
            g["random"] = {"scaled": True, "metrics": {"top1": teachers[i + 1] - 5, "params": 290_000}}
        else:
            g["retrain"] = {"metrics": {"top1": final, "params": 200_000, "epochs": 14}}
            g["random"] = {"scaled": False, "metrics": {"top1": rnd, "params": 190_000}}
        gens.append(g)
    return {"root": "/r", "generations": gens}


def test_trend_says_why_when_teachers_do_not_rise_and_nothing_when_they_do():
    good = comparison(_summary([90.0, 92.0, 94.0], final=85.0, rnd=80.0))
    assert [r["teacher_top1"] for r in good] == [90.0, 92.0, 94.0]
    assert good[0]["searched_as"] == "scaled" and good[-1]["searched_as"] == "retrained"
    assert good[-1]["random_top1"] == 80.0 and good[-1]["random_params"] == 190_000
    assert teacher_trend(good) == []
    bad = teacher_trend(comparison(_summary([42.0, 20.7, 23.1], final=94.9, rnd=90.0)))
    assert len(bad) == 3                                    # gen 2's 23.1 > gen 1's 20.7: no line
    assert bad[0].startswith("gen 1's teacher") and "20.70%" in bad[0] and "42.00%" in bad[0]
    assert "undertrained: 6 epochs against the other's 10" in bad[0]
    assert "smaller: 300,000 params against 500,000" in bad[0]
    assert "the gen-0 teacher reaches 42.00% top-1, not above the searched student of gen 2 at 94.90%" in bad[1]
    assert "undertrained: 10 epochs against the other's 14" in bad[1]
    assert "random student" in bad[2]


def test_trend_compares_training_by_updates_when_train_sizes_differ():
    """A teacher trained 4 epochs on 6,144 images had more updates than a net trained 6 on 2,048:
    the note counts updates, not epochs (which would call the 4-epoch teacher the undertrained one)."""
    s = _summary([93.0, 50.0, 55.0], final=91.0, rnd=85.0, scaled_epochs=6, teacher_epochs=4)
    s["generations"][0]["teacher"].update(train_images=6144, updates_per_epoch=192)
    for g in s["generations"][:2]:
        g["scaled"]["metrics"].update(train_images=2048, updates_per_epoch=64)
    rows = comparison(s)
    assert rows[0]["teacher_training"] == {"epochs": 4, "images": 6144, "updates": 768}
    assert rows[1]["teacher_training"] == {"epochs": 6, "images": 2048, "updates": 384}
    assert rows[2]["searched_training"] is None                    # a run from before the counts: epochs
    notes = teacher_trend(rows)
    assert len(notes) == 1 and notes[0].startswith("gen 1's teacher")
    assert "undertrained: 384 updates (6 epochs of 2,048 images) against the other's 768 (4 of 6,144)" in notes[0]


def test_terminal_and_html_tables_show_teacher_searched_and_random():
    from components.nas_reports import accuracy_rows, accuracy_section
    from pipelines.render import format_summary

    s = _summary([42.0, 20.7, 23.1], final=94.9, rnd=90.0)
    s["comparison"] = comparison(s)
    s["trend"] = teacher_trend(s["comparison"])
    text = format_summary(s)
    head = next(line for line in text.splitlines() if line.strip().startswith("gen  teacher top-1"))
    for col in ("teacher top-1", "searched top-1", "searched params", "random top-1", "random params"):
        assert col in head
    assert "  2    23.10          94.90           200K" in text
    assert text.count("note: ") == 3
    header, rows = accuracy_rows(s)
    assert header[-3:] == ["searched net params", "random architecture top-1 (%)", "random architecture params"]
    assert rows[0][-2:] == ["15.7", "290K"] and rows[2][-2:] == ["90", "190K"]
    html = accuracy_section(s, draw=False)
    assert "random architecture params" in html and "note: gen 1&#x27;s teacher" in html
    rising = _summary([90.0, 92.0, 94.0], final=85.0, rnd=80.0)
    rising["comparison"] = comparison(rising)
    rising["trend"] = teacher_trend(rising["comparison"])
    assert "teachers rise every generation" in format_summary(rising) and "note: " not in format_summary(rising)


def test_component_trains_nothing_when_switched_off(tmp_path):
    import json

    from components import _runtime as rt
    from components.random_baseline import random_baseline
    from tests.helpers import FakeArtifact, tiny_teacher

    root = str(tmp_path / "run")
    cfg = RunConfig(root=root, generations=1, data=tiny_data(resolution=32), retrain=FAST, transfer=[],
                    random_baseline=False)
    arch, teacher = FakeArtifact(str(tmp_path / "arch.json")), FakeArtifact(str(tmp_path / "teacher.json"))
    arch.metadata["uri"] = _searched(root, 0)
    rt.write_teacher(teacher, tiny_teacher(str(tmp_path)), 0)
    out = {n: FakeArtifact(str(tmp_path / n)) for n in ("baseline", "metrics", "report")}
    random_baseline.python_func(run_config=json.dumps(cfg.to_dict()), generation=0, scale_retrain="", arch=arch,
                                teacher=teacher, **out)
    assert rt.read_json_artifact(out["baseline"]) == {"generation": 0, "skipped": True}
    assert not storage.exists(generation(root, 0).random_arch)
