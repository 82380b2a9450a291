"""Generation (seed part III): octaves, class images, batched = one by one, class names, the
`generate` command."""

import itertools
import json
import math
import re
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import layerscope as ls
from layerscope.errors import ConfigError
from layerscope.generation import (
    GenerationConfig,
    Stage,
    class_scores,
    generate_classes,
    parse_classes,
    run_stages,
)
from layerscope.inversion import Jitter, Schedule
from layerscope.objectives import Objective, Term
from layerscope.tables import read_csv


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two small nets trained for one epoch on 24 px photo crops (a few seconds each):
    checkpoint paths (their sidecars name the model and the 12 photo classes)."""
    from layerscope.studies.train import train
    from layerscope.training import TrainConfig

    out = []
    for name in ("smallcnn", "smallcnn_nopool"):
        d = tmp_path_factory.mktemp(name)
        cfg = TrainConfig(
            model=name, data="photos", size=24, epochs=1, lr=3e-3, batch_size=64,
            data_params={"length": 600}, device="cpu",
        )  # fmt: skip
        run = train(cfg, out=d / "run")
        out.append(str(run / "checkpoints" / "epoch_001.safetensors"))
    return out


class _Seen(Term):
    """An input term that records the shape of every input it is evaluated on."""

    def loss(self, act, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return (x - 0.5).pow(2).flatten(1).sum(1)


def test_octave_stages_resize_and_crop_as_configured():
    cfg = GenerationConfig(
        stages=(
            Stage(16, 3, Schedule(0.01, 0.01), None, crop=12),
            Stage(20, 2, Schedule(0.01, 0.01), Schedule(1.0, 0.5), crop=16),
            Stage(24, 2, Schedule(0.01, 0.01), None),
        ),
        record_every=100,
    )
    term = _Seen()
    object.__setattr__(term, "shapes", [])
    images, curves, failed = run_stages(Objective.of(term), 2, cfg, torch.device("cpu"))
    steps = [s for s in term.shapes]
    # each octave: its steps on crops, then the final (uncropped) evaluation for the record
    assert steps == [(12, 12)] * 3 + [(16, 16)] + [(16, 16)] * 2 + [(20, 20)] + [(24, 24)] * 3
    assert images.shape == (2, 3, 24, 24) and not failed
    assert [r["stage"] for r in curves[0]] == [0, 0, 1, 1, 2, 2]
    # jitter offsets: inside the image, the same for the same seed
    j = Jitter(12)
    a = [j.offsets(torch.Generator().manual_seed(5), 16, 20) for _ in range(1)]
    draws = [j.offsets(g, 16, 20) for g in [torch.Generator().manual_seed(5)] for _ in range(200)]
    assert all(0 <= oy <= 4 and 0 <= ox <= 8 for oy, ox in draws)
    assert draws[0] == a[0] and len(set(draws)) > 20
    with pytest.raises(ConfigError, match="crop"):
        Stage(16, 3, Schedule(0.1, 0.1), crop=17)


def test_the_preset_size_scales_every_octave():
    cfg = GenerationConfig.preset("googlenet", size=64)
    assert [s.size for s in cfg.stages] == [64, round(490 * 64 / 299)]
    assert cfg.stages[1].crop == round(470 * 64 / 299)
    cfg = GenerationConfig.preset("inceptionv3")
    assert [(s.size, s.iterations, s.crop) for s in cfg.stages] == [
        (299, 100, None),
        (340, 100, 320),
        (390, 100, None),
    ]
    assert cfg.step == "gradient" and cfg.stages[1].lr == Schedule(1.3, 0.45)


def test_class_generation_raises_the_class_logit(trained):
    model = ls.load_model(trained[0])
    cfg = GenerationConfig(
        stages=(
            Stage(24, 60, Schedule(0.1, 0.02), Schedule(0.6, 0.3)),
            Stage(30, 60, Schedule(0.06, 0.01), Schedule(0.6, 0.3), crop=24),
        ),
        record_every=20,
    )
    classes = [0, 5, 9]
    res = generate_classes(model, classes, cfg, device="cpu")
    start = 0.7 + torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)) / 20
    with torch.no_grad():
        before = model(start)[0]
    rows = class_scores([model], res, "cpu")
    for r, c in zip(rows, classes, strict=True):
        assert r["class"] == c and r["class_name"] == model.classes[c]
        # a one-epoch net on 24 px crops has logits of a few units: +1 is far above the
        # start image's logit, and the class is the net's first choice
        assert r["logit"] > before[c] + 1, (r, float(before[c]))
        assert r["rank"] == 1, r
    # the loss |200 − logit| fell in every octave
    for g in res:
        assert g.curve[-1]["loss"] < g.curve[0]["loss"]


def test_a_batch_of_classes_and_models_equals_them_one_by_one(trained):
    # float64: a batch and a single row may take different float32 kernels
    models = [ls.load_model(p).double() for p in trained]
    cfg = GenerationConfig(
        stages=(
            Stage(16, 6, Schedule(0.05, 0.02), Schedule(1.0, 0.5)),
            Stage(20, 4, Schedule(0.03, 0.01), Schedule(0.8, 0.4), crop=16),
        ),
        record_every=2,
    )
    for mode in ("single", "combined"):
        batched = {g.key: g for g in generate_classes(models, [1, 4], cfg, mode, device="cpu")}
        for c in (1, 4):
            alone = generate_classes(models, [c], cfg, mode, device="cpu")
            for g in alone:
                torch.testing.assert_close(batched[g.key].image, g.image, atol=1e-10, rtol=0)


def test_class_names_and_indices_are_checked():
    names = ["tench", "goldfish", "great white shark", "goldfinch"]
    assert parse_classes("0..2", names) == [0, 1, 2]
    assert parse_classes("3,0", names) == [3, 0]
    assert parse_classes("Tench,goldfinch", names) == [0, 3]
    for bad, match in [
        ("7", "not a class of this model; valid: 0..3"),
        ("goldfisch", "closest: goldfish"),
        ("2..9", "outside the 4 classes"),
        ("a..b", "two indices"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_classes(bad, names)


def test_generate_command_writes_every_artefact(trained, run_cli, tmp_path):
    out = tmp_path / "g"
    code, _, err = run_cli(
        "generate", "--weights", ",".join(trained), "--class", "chelsea,coins", "--mode",
        "combined", "--size", "16", "--iterations", "5", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    for f in ("config.json", "scores.csv", "curves.csv", "grid.png", "report.html"):
        assert (out / f).is_file(), f
    keys = sorted(p.name for p in (out / "images").iterdir())
    assert keys == ["combined__chelsea", "combined__coins"]
    for k in keys:
        assert (out / "images" / k / "image.png").is_file()
    scores = (out / "scores.csv").read_text().splitlines()
    assert len(scores) == 1 + 2 * 2  # two images × two models
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "generate" and len(meta["generation"]["stages"]) == 2
    # --resume with nothing left to do keeps the images and rebuilds the tables
    before = (out / "images" / "combined__coins" / "image.safetensors").read_bytes()
    code, _, err = run_cli("generate", "--out", str(out), "--resume", "--device", "cpu")
    assert code == 0, err
    assert (out / "images" / "combined__coins" / "image.safetensors").read_bytes() == before


def test_generate_single_and_difference_and_vectorised(trained, run_cli, tmp_path):
    w = ",".join(trained)
    for mode in ("single", "difference"):
        out = tmp_path / mode
        code, _, err = run_cli(
            "generate", "--weights", w, "--class", "0,1", "--mode", mode, "--size", "16",
            "--iterations", "3", "--out", str(out), "--device", "cpu",
        )  # fmt: skip
        assert code == 0, err
        n = len(list((out / "images").iterdir()))
        assert n == (4 if mode == "single" else 2)
    out = tmp_path / "vector"
    code, _, err = run_cli(
        "generate", "--weights", trained[0], "--target-from-image", "generated",
        "--target-model", "smallcnn_nopool", "--target-weights", trained[1], "--class", "0,1",
        "--size", "16", "--iterations", "3", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    results = [json.loads((p / "result.json").read_text()) for p in (out / "images").iterdir()]
    kinds = sorted(r["mode"] for r in results)
    assert kinds == ["single"] * 4 + ["vector"] * 2  # the target model's, its own, matched
    vec = (out / "vector.csv").read_text().splitlines()
    assert len(vec) == 3 and "own_class_image_rms_to_target" in vec[0]
    out = tmp_path / "photos"
    code, _, err = run_cli(
        "generate", "--weights", trained[0], "--target-from-image", "chelsea,coffee",
        "--size", "16", "--iterations", "3", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (out / "targets").iterdir()) == ["chelsea.png", "coffee.png"]
    # two photos with one file name in two folders: two targets, two results, both scored
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        ls.save_image(ls.load_image("chelsea", 16) * (0.5 + 0.4 * k), tmp_path / folder / "x.png")
    out = tmp_path / "same-stem"
    code, _, err = run_cli(
        "generate", "--weights", trained[0], "--size", "16", "--iterations", "3",
        "--target-from-image", f"{tmp_path / 'a' / 'x.png'},{tmp_path / 'b' / 'x.png'}",
        "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert len(list((out / "targets").iterdir())) == 2
    assert len(list(out.glob("images/*/result.json"))) == 2
    assert len((out / "vector.csv").read_text().splitlines()) == 3  # header + both images


def test_bad_classes_are_one_line_errors(trained, run_cli, tmp_path):
    code, _, err = run_cli(
        "generate", "--weights", trained[0], "--class", "tench", "--size", "16",
        "--out", str(tmp_path / "x"), "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and "not a class name" in err and "0 chelsea" in err
    assert not (tmp_path / "x").exists()


def test_merging_lowers_the_rss_at_every_step(trained):
    from layerscope.merging import merge, rss

    student, teacher = (ls.load_model(p).double() for p in trained)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)).double()
    before = {k: v.clone() for k, v in student.net.state_dict().items()}
    res = merge(student, teacher, images, steps=30, lr=1e-3, record_every=1)
    curve = [r["rss_train"] for r in res.curve]
    assert len(curve) == 31
    assert all(b < a for a, b in itertools.pairwise(curve)), curve
    assert res.drop > 1.5
    # an independent RSS: Σ (O₁ − O₂)² from the two models' outputs
    with torch.no_grad():
        direct = (res.student(images) - teacher(images)).pow(2).sum(1)
    torch.testing.assert_close(rss(res.student, teacher, images), direct)
    # the student given is untouched; the merged copy is frozen again
    assert all(torch.equal(before[k], v) for k, v in student.net.state_dict().items())
    assert not any(p.requires_grad for p in res.student.parameters())


def test_merge_backtracking_rescues_a_step_size_that_diverges_and_changes_nothing_else(trained):
    """III-3 on another CPU: plain SGD at the source's lr diverged for nets whose last bits
    differ. Backtracking undoes a step that doubles the RSS (or makes it non-finite) and
    retakes it at half the lr; where plain SGD is stable it gives the same bits."""
    from layerscope.finite import Diverged
    from layerscope.merging import merge

    student, teacher = (ls.load_model(p).double() for p in trained)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)).double()
    with pytest.raises(Diverged):  # a step size far past the RSS's curvature
        merge(student, teacher, images, steps=20, lr=10.0)
    rescued = merge(student, teacher, images, steps=20, lr=10.0, backtrack=True, record_every=5)
    rss = [r["rss_train"] for r in rescued.curve]
    assert all(math.isfinite(v) for v in rss) and rss[-1] < rss[0]
    assert rescued.curve[-1]["lr"] < 10.0 and rescued.curve[0]["lr"] == 10.0
    plain = merge(student, teacher, images, steps=10, lr=1e-3)
    same = merge(student, teacher, images, steps=10, lr=1e-3, backtrack=True)
    assert [r["lr"] for r in same.curve] == [1e-3] * len(same.curve)
    a, b = plain.student.net.state_dict(), same.student.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_merge_command_writes_a_loadable_student(trained, run_cli, tmp_path):
    out = tmp_path / "m"
    code, stdout, err = run_cli(
        "merge", "--student", trained[0], "--teacher", trained[1], "--class", "0,1",
        "--steps", "5", "--lr", "1e-4", "--size", "16", "--iterations", "3", "--out", str(out),
        "--device", "cpu", "--record-every", "1",
    )  # fmt: skip
    assert code == 0, err
    # the line printed agrees with merge.csv, and the RSS fell ("nan× lower" passed before)
    found = re.search(r"RSS on the teacher's images (\S+) → (\S+) \((\S+)× lower\)", stdout)
    assert found, stdout
    before, after, drop = (float(v) for v in found.groups())
    curve = read_csv(out / "merge.csv")
    assert before == pytest.approx(curve[0]["rss_train"], rel=1e-3)
    assert after == pytest.approx(curve[-1]["rss_train"], rel=1e-3)
    assert math.isfinite(drop) and after < before and drop == pytest.approx(before / after, 0.05)
    for f in ("merge.csv", "merge.png", "grid.png", "scores.csv", "report.html", "student.json",
              "distances.csv"):  # fmt: skip
        assert (out / f).is_file(), f
    merged = ls.load_model(str(out / "student.safetensors"))
    assert merged.name == "smallcnn" and merged.classes == ls.load_model(trained[0]).classes
    made_by = {
        json.loads((p / "result.json").read_text())["models"][0] for p in (out / "images").iterdir()
    }
    assert len(made_by) == 3  # teacher, student before, student after


def test_googlenet_imagenet_weights_get_imagenet_normalisation_inside(monkeypatch, tmp_path):
    """torchvision builds GoogLeNet with ImageNet weights with ``transform_input=True``: the
    net expects ImageNet-normalised input (and rescales it itself), so the wrapper normalises
    (no second rescaling to [−1, 1]). Weights: a fake file in the torch hub cache."""
    import torchvision

    url = torchvision.models.get_model_weights("googlenet").DEFAULT.url
    torch.manual_seed(0)
    net = torchvision.models.googlenet(
        weights=None, aux_logits=True, transform_input=True, init_weights=True
    )
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(net.state_dict(), cache / url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    m = ls.load_model("googlenet", "imagenet")
    assert m.normalize == "imagenet" and m.net.transform_input is True
    assert m.classes[:2] == ["tench", "goldfish"] and len(m.classes) == 1000
    assert m.config["normalize"] == "imagenet"
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.eval().aux_logits = False
    with torch.no_grad():
        torch.testing.assert_close(m(x), net((x - mean) / std))
    assert parse_classes("tench,goldfinch", m.classes) == [0, 11]


def test_inception_v3_below_75_pixels_is_a_clear_error():
    m = ls.load_model("inception_v3")
    with pytest.raises(ls.ImageError, match=r"too small.*use a larger size"):
        generate_classes(m, [0], GenerationConfig.preset("inceptionv3", size=64), device="cpu")


def test_generate_resume_makes_only_the_missing_classes(trained, run_cli, tmp_path):
    import shutil

    out = tmp_path / "g"
    args = [
        "generate", "--weights", trained[0], "--class", "0,1,2", "--size", "16",
        "--iterations", "3", "--max-batch", "1", "--out", str(out), "--device", "cpu",
    ]  # fmt: skip
    code, _, err = run_cli(*args)
    assert code == 0, err
    images = out / "images"
    keys = sorted(p.name for p in images.iterdir())
    kept = {k: (images / k / "image.safetensors").stat().st_mtime_ns for k in keys}
    lost = load_file(str(images / keys[1] / "image.safetensors"))["image"]
    shutil.rmtree(images / keys[1])  # as if interrupted before that chunk was saved
    code, _, err = run_cli("generate", "--out", str(out), "--resume", "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in images.iterdir()) == keys
    for k in (keys[0], keys[2]):  # not remade
        assert (images / k / "image.safetensors").stat().st_mtime_ns == kept[k]
    remade = load_file(str(images / keys[1] / "image.safetensors"))["image"]
    assert torch.equal(remade, lost)  # and the one remade is the same image
    code, _, err = run_cli(*args[:-4], "--out", str(out), "--resume", "--class", "0")
    assert code == 2 and "--class" in err  # a changed option is refused on resume


def test_generation_out_of_memory_halves_the_classes(trained, monkeypatch, capsys):
    from layerscope import generation

    model = ls.load_model(trained[0])
    cfg = GenerationConfig(stages=(Stage(16, 2, Schedule(0.05, 0.01), None),))
    rows = []

    def tight(obj, n, *a, **k):  # room for two rows at a time
        rows.append(n)
        if n > 2:
            raise torch.OutOfMemoryError("simulated")
        return generation.run_stages(obj, n, *a, **k)

    res = generate_classes(model, [0, 1, 2, 3], cfg, device="cpu", run_rows=tight)
    assert rows == [4, 2, 2] and [g.cls for g in res] == [0, 1, 2, 3]
    assert "out of memory with 4 classes in one batch: halving to 2" in capsys.readouterr().err


def test_padding_grows_the_image_by_two_pixels_a_step():
    cfg = GenerationConfig(
        stages=(
            Stage(16, 3, Schedule(0.01, 0.01), None, pad=1),
            Stage(20, 2, Schedule(0.01, 0.01), Schedule(1.0, 0.5), crop=16, pad=1),
        ),
        record_every=1,
        step="adam",  # its moments grow with the image
    )
    term = _Seen()
    object.__setattr__(term, "shapes", [])
    images, curves, _ = run_stages(Objective.of(term), 2, cfg, torch.device("cpu"))
    assert [r["size"] for r in curves[0]] == [16, 18, 20, 22, 20, 22, 24]
    assert images.shape == (2, 3, 24, 24)
    # each step of the first octave sees the image as the previous step left it
    assert term.shapes[:3] == [(16, 16), (18, 18), (20, 20)]


def test_copies_start_from_their_own_a0_and_copy_0_is_the_single_image(trained, run_cli, tmp_path):
    models = [ls.load_model(p).double() for p in trained]
    cfg = GenerationConfig(stages=(Stage(16, 4, Schedule(0.05, 0.02), Schedule(1.0, 0.5)),))
    one = {g.key: g for g in generate_classes(models, [2, 5], cfg, "combined", device="cpu")}
    two = generate_classes(models, [2, 5], replace(cfg, copies=2), "combined", device="cpu")
    assert [(g.cls, g.copy) for g in two] == [(2, 0), (2, 1), (5, 0), (5, 1)]
    assert [g.key for g in two][:2] == ["combined__coffee__0", "combined__coffee__1"]
    for g in two:
        base = one[g.key.rsplit("__", 1)[0]]
        if g.copy == 0:
            torch.testing.assert_close(g.image, base.image, atol=1e-10, rtol=0)
        else:
            assert (g.image - base.image).abs().max() > 1e-3
    out = tmp_path / "c"
    code, _, err = run_cli(
        "generate", "--weights", trained[0], "--class", "0,1", "--copies", "3", "--size", "16",
        "--iterations", "2", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert len(list((out / "images").iterdir())) == 6
    assert len((out / "scores.csv").read_text().splitlines()) == 1 + 6


def test_class_names_match_exactly_first_then_case_insensitively_only_when_unique():
    from layerscope.generation import parse_classes

    names = ["tench", "Cardigan", "cardigan", "Cat", "cat", "Goldfinch"]
    assert parse_classes("Cardigan", names) == [1]  # the dog, not the sweater
    assert parse_classes("cardigan", names) == [2]
    assert parse_classes("Cat,cat", names) == [3, 4]
    assert parse_classes("goldfinch,TENCH", names) == [5, 0]  # unique either way
    with pytest.raises(ls.ConfigError, match=r"differ only in case .*3 Cat, 4 cat"):
        parse_classes("CAT", names)


def test_merge_with_teacher_and_student_of_one_architecture_keeps_every_role(run_cli, tmp_path):
    """Same architecture, same (untrained) weights state: the student's 'before' images used
    to overwrite the teacher's and scores.csv had no teacher rows."""
    out = tmp_path / "m"
    code, _, err = run_cli(
        "merge", "--student", "resnet10", "--teacher", "resnet10", "--size", "16", "--steps", "2",
        "--iterations", "2", "--class", "0,1", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    made = {json.loads(p.read_text())["models"][0] for p in out.glob("images/*/result.json")}
    assert made == {"teacher", "student before", "student after"}
    assert len(list(out.glob("images/*/result.json"))) == 6  # 3 roles × 2 classes
    scores = ls.tables.read_csv(out / "scores.csv")
    assert {r["made_by"] for r in scores} == made and {r["model"] for r in scores} == made
    assert len(scores) == 6 * 3  # every image scored by every model


def test_merging_takes_generated_images_beyond_the_pixel_range(tiny):
    """Class images of a trained net leave [0, 1] far (a GoogLeNet's spanned [−4.2, 23.9]):
    the merge study hands them over as generated; the public guard still refuses such
    values from a caller who did not say so."""
    from layerscope.merging import merge

    images = torch.rand(2, 3, 32, 32) * 28 - 4
    result = merge(tiny, tiny, images, steps=1, record_every=1, generated=True)
    assert len(result.curve) == 2
    with pytest.raises(ls.LayerscopeError, match="layerscope expects"):
        merge(tiny, tiny, images, steps=1)


def test_several_modes_in_one_run_are_scored_side_by_side(tmp_path):
    """``--mode single,combined``: each model's images and the combined ones, one run (III-1
    compares them); a mode outside the list is one line naming the choices."""
    from layerscope.tables import read_csv

    out = ls.run_study("generate", out=tmp_path / "g", model="resnet10,smallcnn",
                       weights="none,none", mode="single,combined", size=16, iterations=2,
                       classes="0,1")  # fmt: skip
    rows = read_csv(out / "scores.csv")
    made = {(r["mode"], r["made_by"]) for r in rows}
    assert {m for m, _ in made} == {"single", "combined"}
    assert len({b for m, b in made if m == "single"}) == 2  # one per model
    with pytest.raises(ConfigError, match="several, comma separated"):
        ls.run_study("generate", out=tmp_path / "bad", mode="single,bogus")


def test_an_independent_judge_scores_the_class_images_beside_the_run_s_models(tmp_path):
    """``--judge auto`` adds a real net that made none of the images to scores.csv (III-1
    judges coherence by it); with all three real nets in the run, auto has none left and says
    what to give instead."""
    from layerscope.recognition import judge_for

    out = ls.run_study("generate", out=tmp_path / "g", model="efficientnet_lite0,resnet10",
                       weights="imagenet,none", mode="single,combined", size=32, iterations=1,
                       classes="1", judge="auto")  # fmt: skip
    rows = read_csv(out / "scores.csv")
    judged = [r for r in rows if r["model"] == "efficientnet_lite1/imagenet"]
    assert {r["mode"] for r in judged} == {"single", "combined"}
    assert len(judged) == 3  # each net's image and the combined one
    assert json.loads((out / "config.json").read_text())["judge"] == "efficientnet_lite1/imagenet"
    lites = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    with pytest.raises(ConfigError, match="no real net outside the run"):
        judge_for(lites, "auto")


def test_vectorised_images_are_compared_with_their_targets_by_ssim_too(tmp_path):
    """vector.csv holds SSIM beside the RMS distance, each to the image's own target and to
    the others; an image's SSIM to itself is 1 (checked through the same measure)."""
    from layerscope.recognition import ssim

    out = ls.run_study("generate", out=tmp_path / "v", model="resnet10", weights="none",
                       target_from_image="chelsea,coffee", size=16, iterations=2)  # fmt: skip
    rows = read_csv(out / "vector.csv")
    assert len(rows) == 2
    for r in rows:
        assert -1 <= r["ssim_to_target"] <= 1 and -1 <= r["ssim_to_other_targets"] <= 1
    x = torch.rand(1, 3, 16, 16)
    assert ssim(x, x) == pytest.approx(1.0)
