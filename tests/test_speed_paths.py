"""The GPU-minded paths of the descent, checked on the CPU: no host reads inside the step
(failures found at record points, with their exact iteration), recording at any granularity,
lower precision, and out-of-memory fallback."""

from dataclasses import dataclass, field, replace

import pytest
import torch

import layerscope as ls
from layerscope import inversion
from layerscope.inversion import Schedule, descend
from layerscope.objectives import Objective, Term


def _nan_free(rows: list[dict]) -> list[dict]:
    return [{k: (None if v != v else v) for k, v in r.items()} for r in rows]  # NaN ≠ NaN


def test_a_coarse_record_equals_the_every_step_record_at_its_iterations(image32):
    model = ls.load_model("resnet10", seed=0).double()
    cfg = ls.InversionConfig(iterations=20, batching="staged", seed=1)
    img = image32.double()
    every = ls.invert(model, img, ["conv1", "layer2"], config=cfg, record_every=1)
    coarse = ls.invert(model, img, ["conv1", "layer2"], config=cfg, record_every=5)
    for layer in ("conv1", "layer2"):
        a, b = every[layer], coarse[layer]
        assert [r["iteration"] for r in b.curve] == [0, 5, 10, 15, 20]
        picked = [r for r in a.curve if r["iteration"] % 5 == 0]
        assert _nan_free(picked) == _nan_free(b.curve)
        assert torch.equal(a.reconstruction, b.reconstruction)


@dataclass(frozen=True, eq=False)
class _BreaksAt(Term):
    """``Σ(x − ½)²`` per row; row ``row`` becomes infinite from the ``at``-th call on."""

    calls: list = field(default_factory=lambda: [0])
    row: int = -1
    at: int = 0

    def loss(self, act, x):
        self.calls[0] += 1
        v = (x - 0.5).pow(2).flatten(1).sum(1)
        if self.calls[0] > self.at:
            v = v + torch.where(torch.arange(x.shape[0]) == self.row, float("inf"), 0.0)
        return v

    def _subset(self, idx):  # the broken row keeps its identity when rows leave
        return replace(self, row=idx.index(self.row) if self.row in idx else -1)


def _breaking(row: int, at: int) -> Objective:
    return Objective.of(_BreaksAt(row=row, at=at))


def test_a_row_that_goes_non_finite_between_records_is_named_at_its_iteration():
    x0 = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    kw = dict(iterations=12, lr=Schedule(0.1, 0.1), step="normalized", record_every=10)
    seen = []
    x, alive, failures = descend(
        x0, _breaking(1, 3), on_record=lambda i, *a: seen.append((i, list(a[-1]))), **kw
    )
    assert alive == [0, 2] and [f.row for f in failures] == [1]
    assert failures[0].iteration == 3  # exact, though found at the record point 10
    assert torch.isfinite(failures[0].x).all()  # its last finite input
    # the failed row was recorded at 0 only; the others at 0, 10 and the end
    assert seen == [(0, [0, 1, 2]), (10, [0, 2]), (12, [0, 2])]
    # the other rows ended as they end without it
    alone, _, _ = descend(x0[[0, 2]], _breaking(99, 10**9), **kw)
    torch.testing.assert_close(x, alone, atol=1e-12, rtol=0)


def test_bf16_runs_the_net_in_bfloat16_and_measures_in_float32(tiny):
    """CPU autocast in bfloat16: the convolutions see bfloat16 (hooked), while the input, the
    step and every metric stay float32, so the starting distances equal fp32's exactly and
    each descent still moves towards its target. (How close the end lands to fp32's depends
    on the CPU's bfloat16 kernels: measured on ResNet-10 at 64 px, 100 steps, m_g within 1.5%
    here; not asserted, since it is the machine's rounding, not layerscope's.)"""
    layers = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    image = ls.load_image("chelsea", 32)
    seen: dict[str, set] = {"fp32": set(), "bf16": set()}
    results = {}
    conv = tiny.net.conv1
    for precision in seen:
        hook = conv.register_forward_hook(
            lambda _m, _i, out, p=precision: seen[p].add(out.dtype)
        )  # fmt: skip
        try:
            result = ls.invert(tiny, image, layers, iterations=20, device="cpu",
                               precision=precision)  # fmt: skip
        finally:
            hook.remove()
        results[precision] = result
    assert torch.bfloat16 in seen["bf16"] and seen["fp32"] == {torch.float32}
    fp32, bf16 = results["fp32"], results["bf16"]
    for a, b in zip(fp32.targets, bf16.targets, strict=True):
        assert a.layer == b.layer and b.reconstruction.dtype == torch.float32
        start = {k: v for k, v in a.curve[0].items() if k != "loss"}  # the loss is the step's
        assert start == {k: b.curve[0][k] for k in start}  # the same a0, measured in float32
        assert a.curve[0]["loss"] != b.curve[0]["loss"]  # while the step's net ran in bf16
        assert b.final["embedding_distance"] < b.curve[0]["embedding_distance"], b.layer
        assert a.final["reference_distance"] == b.final["reference_distance"]
    with pytest.raises(ls.ConfigError, match="precision must be one of"):
        ls.InversionConfig(precision="fp16")


def test_out_of_memory_halves_the_batch_and_loses_nothing(image32, monkeypatch, capsys):
    model = ls.load_model("resnet10", seed=0).double()
    layers = ["conv1", "layer1", "layer2", "layer3"]
    cfg = ls.InversionConfig(iterations=6, record_every=3, batching="staged", seed=2)
    whole = ls.invert(model, image32.double(), layers, config=cfg)
    sizes = []

    def tight(batch, *a, **k):  # a card that holds two targets at a time
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return inversion.descend_batch(batch, *a, **k)

    seen = []
    halved = inversion.invert_jobs(
        [inversion.Job(model, image32.double(), "img", layer) for layer in layers],
        cfg,
        on_result=lambda r: seen.append(r.layer),
        run_batch=tight,
    )
    assert sizes == [4, 2, 2]
    assert "out of memory with 4 targets in one batch: halving to 2" in capsys.readouterr().err
    assert sorted(seen) == sorted(layers) and len(halved) == 4
    for t in halved:
        torch.testing.assert_close(
            t.reconstruction, whole[t.layer].reconstruction, atol=1e-10, rtol=0
        )

    def full(batch, *a, **k):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(ls.LayerscopeError, match="single target"):
        inversion.invert_jobs([inversion.Job(model, image32.double(), "img", "conv1")], cfg,
                              run_batch=full)  # fmt: skip


def test_max_batch_splits_the_targets_into_chunks(image32, monkeypatch):
    model = ls.load_model("resnet10", seed=0).double()
    sizes = []

    def watch(b, *a, **k):
        sizes.append(len(b))
        return inversion.descend_batch(b, *a, **k)

    cfg = ls.InversionConfig(iterations=2, batching="staged", max_batch=3)
    layers = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    jobs = [inversion.Job(model, image32.double(), "img", layer) for layer in layers]
    r = inversion.invert_jobs(jobs, cfg, run_batch=watch)
    assert sizes == [3, 2] and len(r) == 5


def _noise(**kw):
    from layerscope.training import TrainConfig

    base = dict(
        model="smallcnn", data="noise", size=8, epochs=2, batch_size=16, lr=1e-3, seed=3,
        data_params={"length": 64, "num_classes": 4}, device="cpu", shuffle=True,
    )  # fmt: skip
    return TrainConfig(**(base | kw))


def _weights(run):
    from layerscope.training import latest_checkpoint

    return ls.load_model(str(latest_checkpoint(run))).net.state_dict()


def test_a_data_set_held_on_the_device_trains_exactly_as_the_loader(tmp_path):
    """The device cache serves the loader's images in the loader's order (shuffled, seeded
    per epoch): the trained weights are bit-identical."""
    from layerscope.studies.train import train
    from layerscope.tables import read_csv

    loader = train(_noise(cache="off"), out=tmp_path / "loader")
    cached = train(_noise(cache="device"), out=tmp_path / "cached")
    a, b = _weights(loader), _weights(cached)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_csv(loader / "metrics.csv")[-1]["train_loss"] == pytest.approx(
        read_csv(cached / "metrics.csv")[-1]["train_loss"], rel=1e-12
    )
    # the photo crops: the source photos held on the device, cropped there each epoch
    kw = dict(data="photos", size=16, data_params={"length": 48})
    loader = train(_noise(cache="off", **kw), out=tmp_path / "photos-loader")
    cached = train(_noise(cache="device", **kw), out=tmp_path / "photos-cached")
    a, b = _weights(loader), _weights(cached)
    assert all(torch.equal(a[k], b[k]) for k in a)
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "set" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 12), (60 * i, 90, 30)).save(tmp_path / "set" / label / f"{i}.png")
    with pytest.raises(ls.LayerscopeError, match="use cache off"):
        folder = _noise(cache="device", data=f"folder:{tmp_path / 'set'}", data_params=None)
        train(folder, out=tmp_path / "f")


def test_bf16_training_learns_and_resumes_bit_identically_on_the_cpu(tmp_path):
    from layerscope.studies.train import train
    from layerscope.tables import read_csv

    full = train(_noise(precision="bf16", epochs=3), out=tmp_path / "full")
    part = train(_noise(precision="bf16", epochs=1), out=tmp_path / "part")
    train(_noise(precision="bf16", epochs=3), out=part, resume=True)
    a, b = _weights(full), _weights(part)
    assert all(a[k].dtype == torch.float32 or not a[k].is_floating_point() for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = read_csv(full / "metrics.csv")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_noise_held_on_the_gpu_equals_the_cpu_images():
    from layerscope.data import NoiseImages
    from layerscope.training import DeviceCache

    data = NoiseImages("train", size=16, length=32, num_classes=4, seed=5)
    cache = DeviceCache(data, torch.device("cuda"))
    assert torch.equal(cache.x.cpu(), torch.stack([data[i][0] for i in range(32)]))
    assert cache.y.cpu().tolist() == [data[i][1] for i in range(32)]


def _compiled_vs_eager(device: str):
    from layerscope.inversion import Job, invert_jobs

    model = ls.load_model("smallcnn", seed=0, num_classes=10)
    image = ls.load_image("chelsea", 32)
    layers = ["conv1", "conv2", "conv3"]
    cfg = ls.InversionConfig(iterations=30, record_every=10, batching="staged")
    eager = ls.invert(model, image, layers, config=cfg, device=device)
    status: dict = {}
    jobs = [Job(model, image, "img", layer) for layer in layers]
    fast = invert_jobs(jobs, replace(cfg, compile="on"), device, status=status)
    assert status["compile"].startswith("torch.compile"), status
    by_layer = {t.layer: t for t in fast}
    for t in eager.targets:
        torch.testing.assert_close(
            by_layer[t.layer].reconstruction, t.reconstruction, atol=1e-5, rtol=0
        )
    return status


@pytest.mark.slow
def test_the_compiled_step_equals_the_eager_one_on_the_cpu():
    """torch.compile of the step (models as FX feature extractors); ≈ 15 s of compiling."""
    assert _compiled_vs_eager("cpu")["compile"] == "torch.compile (default)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_graph_step_equals_the_eager_one():
    assert _compiled_vs_eager("cuda")["compile"] == "torch.compile (reduce-overhead)"


def test_where_the_step_cannot_compile_it_runs_eagerly_and_says_why():
    x0 = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    kw = dict(iterations=2, lr=Schedule(0.1, 0.1), compile="on")
    status: dict = {}
    descend(x0, _breaking(99, 10**9), jitter=ls.Jitter(8), status=status, **kw)
    assert status["compile"] == "eager: jitter moves the crop every step"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    model = ls.Model(net, name="bn")
    status = {}
    descend(x0, Objective.of(ls.BatchNormPrior(model, layer="1")), status=status, **kw)
    assert status["compile"] == "eager: the BatchNorm prior needs hooks"
    status = {}
    descend(x0, _breaking(99, 10**9), status=status, iterations=2, lr=Schedule(0.1, 0.1))
    assert status["compile"] == "off"
    with pytest.raises(ls.ConfigError, match="compile must be one of"):
        ls.InversionConfig(compile="yes")


def test_two_weight_states_in_one_batch_equal_two_runs(image32, monkeypatch):
    """Staged batching puts every weight state of one architecture in one descent (each state
    forwards its own rows); float64: exactly what each state gives alone."""
    a = ls.load_model("resnet10", seed=0).double()
    b = ls.load_model("resnet10", seed=1).double()
    b.weights = "seed1"  # another weight state of the same architecture
    layers = ["conv1", "layer2"]
    cfg = ls.InversionConfig(iterations=12, record_every=4, batching="staged", seed=4)
    sizes = []

    def watch(bt, *x, **k):
        sizes.append(len(bt))
        return inversion.descend_batch(bt, *x, **k)

    img = image32.double()
    jobs = [inversion.Job(m, img, "img", layer) for m in (a, b) for layer in layers]
    together = inversion.invert_jobs(jobs, cfg, run_batch=watch)
    assert sizes == [4]  # one batch: two states × two layers
    for m in (a, b):
        alone = ls.invert(m, img, layers, config=cfg)
        for t in alone.targets:
            (same,) = [u for u in together if u.weights == m.weights and u.layer == t.layer]
            torch.testing.assert_close(same.reconstruction, t.reconstruction, atol=1e-10, rtol=0)
            assert [r["embedding_distance"] for r in same.curve] == pytest.approx(
                [r["embedding_distance"] for r in t.curve], rel=1e-9
            )
            assert same.final["reference_distance"] == pytest.approx(
                t.final["reference_distance"], rel=1e-12
            )


def test_the_chunk_size_comes_from_free_memory():
    from layerscope.inversion import rows_that_fit

    assert rows_that_fit(row_bytes=100, free_bytes=10_000) == 60  # 60% of free memory
    assert rows_that_fit(row_bytes=10**9, free_bytes=10) == 1  # never less than one row
    assert rows_that_fit(row_bytes=0, free_bytes=100, share=0.5) == 50


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_chunk_size_is_measured_and_the_results_are_whole(image32):
    from layerscope.inversion import _rows_that_fit

    model = ls.load_model("resnet10", seed=0).to("cuda")
    jobs = [inversion.Job(model, image32, "img", layer) for layer in ("conv1", "layer4")]
    assert _rows_that_fit(jobs, torch.device("cuda")) >= 2
    r = ls.invert(model, image32, ["conv1", "layer4"], iterations=3, device="cuda")
    assert len(r.targets) == 2


def test_the_free_memory_probe_runs_its_row_and_divides(image32, monkeypatch):
    """The CUDA probe's arithmetic, run on the CPU with the memory counters faked: the probing
    row goes forward and back through every model of the batch."""
    from layerscope.inversion import _rows_that_fit

    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: seen.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 1000 + 500)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (100_000, 10**9))
    a = ls.load_model("resnet10", seed=0)
    b = ls.load_model("resnet10", seed=1)
    jobs = [
        inversion.Job(m, image32, "img", layer) for m in (a, b) for layer in ("conv1", "layer3")
    ]
    assert _rows_that_fit(jobs, torch.device("cpu")) == 120  # 60% of 100,000 / 500
    assert seen == ["reset", "reset"]  # one probe per model


def test_how_the_step_ran_is_recorded_for_every_descent_that_shared_the_status(tiny, image32):
    """Octaves share one status: an octave with jitter runs eagerly where another does not,
    and the run records both (it used to keep only the last octave's)."""
    from layerscope.descent import Jitter, descend, how_it_ran
    from layerscope.objectives import ClassLogit

    objective = Objective.of(ClassLogit(tiny, classes=torch.tensor([0])))
    status: dict = {}
    x0 = image32.clone()
    descend(x0, objective, iterations=1, lr=Schedule(0.01, 0.01), jitter=Jitter(24),
            compile="on", status=status)  # fmt: skip
    descend(x0, objective, iterations=1, lr=Schedule(0.01, 0.01), compile="off", status=status)
    assert how_it_ran(status) == "eager: jitter moves the crop every step; off"
