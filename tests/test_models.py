import pytest
import torch
from safetensors.torch import save_file

import layerscope as ls


def test_untrained_weights_come_from_the_seed():
    a = ls.load_model("resnet18", seed=1).state_dict()
    b = ls.load_model("resnet18", seed=1).state_dict()
    c = ls.load_model("resnet18", seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.conv1.weight"], c["net.conv1.weight"])


def test_models_are_frozen_and_stay_in_eval_mode(tiny):
    assert all(not p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training and not tiny.net.training


def test_unknown_model_names_the_closest():
    with pytest.raises(ls.ModelNotFound) as info:
        ls.load_model("resnet51")
    exc = info.value
    assert "resnet50" in str(exc) and "layerscope models" in str(exc)


def test_safetensors_and_pt_checkpoints_round_trip(tmp_path):
    src = ls.load_model("resnet10", seed=3)
    state = {k: v.clone() for k, v in src.net.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        m = ls.load_model("resnet10", tmp_path / name, seed=99)
        got = m.net.state_dict()
        assert all(torch.equal(got[k], state[k]) for k in state)
        assert m.weights == str(tmp_path / name)


def test_checkpoint_errors_name_the_fix(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    for path, needle in (
        (tmp_path / "missing.pt", "neither"),
        (tmp_path / "evil.pt", "cannot read checkpoint"),
    ):
        with pytest.raises((ls.WeightsError, ls.LayerscopeError)) as info:
            ls.load_model("resnet10", path)
        exc = info.value
        assert needle in str(exc)
    head = ls.load_model("resnet10", num_classes=7).net.state_dict()
    save_file(head, tmp_path / "seven.safetensors")
    with pytest.raises(ls.WeightsError) as info:
        ls.load_model("resnet10", tmp_path / "seven.safetensors")
    exc = info.value
    assert "fc.weight" in str(exc) and "pass num_classes" in str(exc)
    assert ls.load_model("resnet10", tmp_path / "seven.safetensors", num_classes=7)


def test_imagenet_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    from urllib.error import URLError

    import torchvision.models._api as api

    def offline(*a, **k):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(ls.WeightsUnavailable) as info:
        ls.load_model("squeezenet1_1", "imagenet")
    exc = info.value
    assert "weights PATH" in str(exc) and "squeezenet1_1" in str(exc)


def test_imagenet_weights_load_from_the_torch_hub_cache(monkeypatch, tmp_path):
    import torchvision

    url = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT.url
    fake = ls.load_model("squeezenet1_1", seed=5).net.state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(fake, cache / url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    m = ls.load_model("squeezenet1_1", "imagenet")
    assert torch.equal(m.net.state_dict()["features.0.weight"], fake["features.0.weight"])


def test_builtin_fully_connected_nets():
    m = ls.load_model("linear:50x3", input_size=4)
    assert [n for n, _ in m.net.named_children()] == ["flatten", "fc1", "fc2", "fc3"]
    assert m(torch.rand(2, 3, 4, 4)).shape == (2, 50)
    mlp = ls.load_model("mlp:20,30", input_size=4, num_classes=5)
    assert mlp(torch.rand(1, 3, 4, 4)).shape == (1, 5)


def test_timm_models_load_by_name():
    m = ls.load_model("timm/test_resnet")
    assert m.net.__class__.__module__.startswith("timm")
    assert m(torch.rand(1, 3, 32, 32)).shape[0] == 1


def test_imagenet_normalisation_is_inside_the_model():
    plain = ls.load_model("resnet10", seed=0)
    norm = ls.load_model("resnet10", seed=0, normalize="imagenet")
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor(ls.models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ls.models.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(norm(x), plain((x - mean) / std))


def _no_download(*args, **kwargs):
    raise AssertionError("timm.create_model(pretrained=True) was called: it would download")


@pytest.mark.parametrize("how", ["env", "no-network"])
def test_timm_pretrained_offline_is_a_clear_error_without_trying_to_download(monkeypatch, how):
    """Offline either by HF_HUB_OFFLINE (set after huggingface_hub was imported, which the hub
    itself would ignore) or by a network that does not answer: the error comes before any
    download attempt, so it cannot spend a minute retrying (nor download on a networked CI)."""
    import socket

    import timm

    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

        def unreachable(*args, **kwargs):
            raise OSError("network is unreachable")

        monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(timm, "create_model", _no_download)
    monkeypatch.setattr("layerscope.models._timm_cached", lambda name: False)  # any machine
    with pytest.raises(ls.WeightsUnavailable) as info:
        ls.load_model("timm/test_resnet", "imagenet")
    assert "weights PATH" in str(info.value) and "offline" in str(info.value)


def test_builtins_have_no_imagenet_weights():
    with pytest.raises(ls.WeightsUnavailable) as info:
        ls.load_model("smallcnn", "imagenet")
    exc = info.value
    assert "weights PATH" in str(exc)


def test_a_missing_checkpoint_given_as_the_model_is_a_clear_error(tmp_path):
    with pytest.raises(ls.WeightsError) as info:
        ls.load_model(str(tmp_path / "gone.safetensors"))
    exc = info.value
    assert "does not exist" in str(exc)


def test_wrapping_a_users_module_changes_nothing_of_it(image32):
    """ls.Model(net) and ls.invert(net) leave the caller's module in its mode, with its
    parameters' requires_grad and its BatchNorm statistics as they were."""
    net = ls.load_model("resnet10", seed=0).net
    net.train()
    net.requires_grad_(True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wrapped = ls.Model(net, name="mine")
    assert net.training and all(p.requires_grad for p in net.parameters())
    ls.activations(net, image32, ["layer2"])  # a bare module in train mode, too
    ls.activations(wrapped, image32, ["layer2"])
    r = ls.invert(net, image32, ["layer1"], iterations=2)  # a bare module: wrapped inside
    assert r["layer1"].model == "resnet" and r["layer1"].curve
    assert net.training and all(m.training for m in net.modules())
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched


def test_no_layers_is_an_error_not_all(tiny):
    with pytest.raises(ls.LayerNotFound, match="no layers given"):
        ls.resolve_layers(tiny, [])


def test_a_model_needs_no_name_its_class_name_serves():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    model = ls.Model(net)  # as the README writes it
    assert model.name == "sequential" and model.label == "sequential/none"
