"""The ReLU completeness bound: p_l against a direct count, the random-layer rank experiment
against what must hold, the CLI."""

import torch

import layerscope as ls
from layerscope.studies.relu_bound import bound_rows, rank_experiment, relu_probabilities


def test_relu_probabilities_equal_a_direct_count():
    model = ls.load_model("mlp:20,30", seed=0, input_size=4)
    x = torch.rand(40, 3, 4, 4, generator=torch.Generator().manual_seed(0)) - 0.5
    rows = relu_probabilities(model, x.split(16))
    net = model.net
    with torch.no_grad():
        h1 = net.relu1(net.fc1(net.flatten(x)))
        h2 = net.relu2(net.fc2(h1))
    assert [r["layer"] for r in rows] == ["relu1", "relu2"]
    assert [r["units"] for r in rows] == [20, 30]
    assert rows[0]["p"] == float((h1 > 0).double().mean())
    assert rows[1]["p"] == float((h2 > 0).double().mean())
    bounds = bound_rows(rows, input_dim=48)
    assert bounds[0]["previous_units"] == 48 and bounds[1]["previous_units"] == 20
    assert bounds[0]["layerwise_ok"] == (rows[0]["p"] * 20 >= 48)


def test_a_relu_module_called_twice_counts_as_two_layers(tiny, image32):
    rows = relu_probabilities(tiny, [image32])
    names = [r["layer"] for r in rows]
    assert "layer1.0.relu" in names and "layer1.0.relu#2" in names  # BasicBlock calls it twice


def test_random_relu_layers_are_rank_deficient_below_twice_the_width():
    rows = {r["ratio"]: r for r in rank_experiment(n=16, ratios=(1.0, 4.0), inputs=60)}
    assert rows[1.0]["full_rank_share"] == 0  # about half the 16 rows are live: fewer than n
    assert rows[1.0]["sigma_min_median"] == 0
    assert rows[4.0]["full_rank_share"] == 1 and rows[4.0]["sigma_min_median"] > 0


def test_relu_bound_cli_writes_its_artefacts_and_refuses_a_net_without_relu(run_cli, tmp_path):
    out = tmp_path / "rb"
    args = ["study", "relu-bound", "--model", "mlp:100,200", "--size", "8", "--n", "32"]
    args += ["--rank-n", "8", "--rank-inputs", "20"]
    code, stdout, err = run_cli(*args, "--out", str(out))
    assert code == 0, err
    for name in ("config.json", "layers.csv", "rank.csv", "relu_bound.png", "report.html"):
        assert (out / name).is_file(), name
    assert "Marchenko" in stdout
    code, _, err = run_cli(*args[:2], "--model", "linear:48x2", "--size", "4", "--out",
                           str(tmp_path / "x"))  # fmt: skip
    assert code == 2 and "no nn.ReLU" in err and not (tmp_path / "x").exists()


def test_model_layer_rank_counts_live_rows_of_the_nets_own_layers():
    from layerscope.studies.relu_bound import model_layer_rank

    model = ls.load_model("mlp:20,60", seed=0, input_size=2)  # 12 inputs
    x = torch.rand(30, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    rows = {r["layer"]: r for r in model_layer_rank(model, x.split(10), max_inputs=30)}
    w, b = model.net.fc1.weight.double(), model.net.fc1.bias.double()
    live = (x.flatten(1).double() @ w.T + b) > 0
    expected = sum(
        int(torch.linalg.matrix_rank(w[row]) == 12) if row.sum() >= 12 else 0 for row in live
    )
    assert rows["fc1"]["inputs"] == 30 and rows["fc1"]["full_rank_share"] == expected / 30
    assert rows["fc2"]["n"] == 20 and rows["fc2"]["m"] == 60
