import pytest
import torch

import layerscope as ls
from layerscope.layers import cut_points, staged_forward

STAGES = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _full_forward_capture(model, x, names):
    """Independent expectation: a full, un-truncated forward with plain hooks."""
    got, handles = {}, []
    mods = dict(model.net.named_modules())
    for n in names:
        handles.append(
            mods[n].register_forward_hook(
                lambda m, i, o, n=n: got.setdefault(n, o.detach().clone())
            )
        )
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return got


def test_truncated_forward_equals_the_full_model(tiny, image32):
    x = torch.cat([image32, torch.rand(1, 3, 32, 32)])
    full = _full_forward_capture(tiny, x, STAGES)
    with torch.no_grad():
        hooks = ls.activations(tiny, x, STAGES)
        fx = ls.activations(tiny, x, STAGES, backend="fx")
    for n in STAGES:
        torch.testing.assert_close(hooks[n], full[n], rtol=0, atol=0)
        torch.testing.assert_close(fx[n], full[n], rtol=1e-6, atol=1e-6)


def test_truncated_forward_stops_after_the_deepest_layer(tiny, image32):
    calls = []
    h = tiny.net.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        ls.activations(tiny, image32, ["layer2"])
    finally:
        h.remove()
    assert calls == []


def test_activation_before_an_inplace_relu_is_not_overwritten(tiny, image32):
    with torch.no_grad():
        got = ls.activations(tiny, image32, ["bn1"])["bn1"]
        expected = tiny.net.bn1(tiny.net.conv1(image32))
    assert (expected < 0).any()
    torch.testing.assert_close(got, expected)
    # a transform sees the output as the layer produced it, before the in-place ReLU
    stats = ls.activations(tiny, image32, ["bn1", "layer1"], transform=lambda n, t: t.min())
    assert float(stats["bn1"]) == pytest.approx(float(expected.min()))
    assert float(stats["bn1"]) < 0


def test_resnet_stages_are_cut_points_and_block_internals_are_not(tiny):
    cuts = cut_points(tiny, [*STAGES, "layer1.0.conv1"])
    assert set(STAGES) <= cuts
    assert "layer1.0.conv1" not in cuts


def test_staged_forward_narrows_the_batch_without_changing_results(tiny):
    x = torch.rand(4, 3, 32, 32)
    groups = [("conv1", 1), ("layer1", 2), ("layer4", 1)]
    cuts = cut_points(tiny, [g for g, _ in groups])  # traced before the test's own hook
    seen = []
    h = tiny.net.layer4.register_forward_pre_hook(lambda m, i: seen.append(i[0].shape[0]))
    try:
        with torch.no_grad():
            staged = staged_forward(tiny, x, groups, cuts)
    finally:
        h.remove()
    assert seen == [1]  # only the layer4 row reached layer4
    full = _full_forward_capture(tiny, x, ["conv1", "layer1", "layer4"])
    torch.testing.assert_close(staged["conv1"], full["conv1"][0:1])
    torch.testing.assert_close(staged["layer1"], full["layer1"][1:3])
    torch.testing.assert_close(staged["layer4"], full["layer4"][3:4])


def test_seed_aliases_resolve_to_torchvision_names(tiny):
    assert ls.resolve_layers(tiny, "Conv1,conv1_pooled,conv2,CONV5") == [
        "conv1",
        "maxpool",
        "layer1",
        "layer4",
    ]
    assert ls.resolve_layers(tiny, "all") == STAGES


def test_unknown_layer_lists_the_closest(tiny):
    with pytest.raises(ls.LayerNotFound, match="layer4"):
        ls.resolve_layers(tiny, ["layer5"])


def test_layer_descriptions_have_shapes_and_aliases():
    m = ls.load_model("resnet50")
    info = {i.name: i for i in ls.describe_layers(m, 299)}
    # EXPERIMENTS.md §1: 64×150×150 at conv1 and 2048×10×10 at layer4 for a 299 input
    assert info["conv1"].shape == (64, 150, 150) and info["conv1"].numel == 1_440_000
    assert info["maxpool"].shape == (64, 75, 75) and info["maxpool"].alias == "conv1_pooled"
    assert info["layer1"].shape == (256, 75, 75) and info["layer1"].alias == "conv2"
    assert info["layer4"].shape == (2048, 10, 10) and info["layer4"].alias == "conv5"
    assert info["layer1.0.relu"].calls == 3


def test_image_too_small_is_a_clear_error():
    m = ls.load_model("vgg11")
    with pytest.raises(ls.ImageError, match="use a larger size"):
        ls.describe_layers(m, 8)


def test_layers_of_non_resnet_models(image32):
    m = ls.load_model("smallcnn")
    assert ls.default_layers(m) == ["conv1", "conv2", "conv3", "conv4", "pool"]
    vgg = ls.load_model("vgg11")
    assert ls.default_layers(vgg)[0] == "features.0"
    assert not any(n.startswith("classifier") for n in ls.default_layers(vgg))
    vit = ls.load_model("timm/test_vit")
    assert ls.default_layers(vit)[:2] == ["patch_embed", "blocks.0"]
    assert ls.default_layers(ls.load_model("linear:8x3", input_size=2)) == ["fc1", "fc2", "fc3"]


def test_inversion_reaches_layers_of_a_vision_transformer():
    vit = ls.load_model("timm/test_vit")
    image = ls.load_image("chelsea", 160)
    r = ls.invert(vit, image, ["patch_embed", "blocks.1"], iterations=6, record_every=3)
    for t in r.targets:
        mg = [row["embedding_distance"] for row in t.curve]
        assert t.status == "ok" and mg[-1] < mg[0]


def test_folding_batchnorm_keeps_the_function_and_tapped_convolutions(tiny, image32):
    from layerscope.models import fold_batchnorm

    folded = fold_batchnorm(tiny, keep={"conv1"})
    assert type(folded.net.layer1[0].bn1).__name__ == "Identity"
    assert type(folded.net.bn1).__name__ == "BatchNorm2d"  # conv1 is tapped: not folded
    assert type(tiny.net.layer1[0].bn1).__name__ == "BatchNorm2d"  # the original is untouched
    names = ["conv1", "layer1.0.bn1", "layer4"]
    with torch.no_grad():
        a, b = ls.activations(tiny, image32, names), ls.activations(folded, image32, names)
    for n in names:
        torch.testing.assert_close(b[n], a[n], rtol=1e-4, atol=1e-5)
    assert all(not p.requires_grad for p in folded.parameters())
