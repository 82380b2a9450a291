"""The seed's headline, as properties of a real run (untrained ResNets, a real photo)."""

import pytest

import layerscope as ls


def _run(name: str, size: int, iterations: int) -> ls.InversionResult:
    model = ls.load_model(name, seed=0)
    image = ls.load_image("chelsea", size)
    return ls.invert(model, image, "all", iterations=iterations, record_every=iterations)


def _check_headline(result: ls.InversionResult) -> None:
    final = {t.layer: t.final for t in result.targets}
    # reconstructions get worse with depth: conv1 (before pooling) is far better than layer4
    assert final["conv1"]["input_distance"] < 0.5 * final["layer4"]["input_distance"]
    # at the deepest layer the descent converges in the layer's space (m_g < m_r) although
    # the image is further from the target than the shifted reference a′: non-uniqueness
    deep = final["layer4"]
    assert deep["embedding_distance"] < deep["reference_distance"]
    assert deep["input_distance"] > deep["reference_input_distance"]


def test_headline_on_a_small_resnet():
    _check_headline(_run("resnet18", 64, 120))


@pytest.mark.slow
def test_headline_on_resnet50_at_224():
    _check_headline(_run("resnet50", 224, 300))
