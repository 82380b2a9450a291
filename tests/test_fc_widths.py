"""Fully connected width studies on tiny nets: the outcome the seed describes, the CLI."""

import layerscope as ls
from layerscope.studies.fc_widths import _final


def test_fc_widths_narrow_nets_cannot_be_inverted_and_wide_ones_can(run_cli, tmp_path):
    """Input 3·6·6 = 108 values: a 60-wide net leaves m_i where it stalls while m_g falls; a
    160-wide one keeps recovering the input; depth at equal width costs steps."""
    out = tmp_path / "fc"
    args = ["study", "fc-widths", "--size", "6", "--depth", "2", "--narrow", "60", "--wide"]
    args += ["160", "--growing", "120,160,200", "--iterations", "300", "--out", str(out)]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    for name in ("config.json", "fc_widths.csv", "fc_widths.png", "report.html"):
        assert (out / name).is_file(), name
    final = {(r["net"], r["layer"]): r for r in _final(ls.tables.read_csv(out / "fc_widths.csv"))}
    narrow, wide = final[("linear:60x2", "fc2")], final[("linear:160x2", "fc2")]
    assert narrow["embedding_distance"] < 0.1 * narrow["reference_distance"]  # matched…
    assert narrow["input_distance"] > 5 * wide["input_distance"]  # …but not recovered
    deep = [final[("linear:160x4", f"fc{k}")]["input_distance"] for k in (1, 2, 3, 4)]
    assert deep[0] < deep[-1]
    assert "final distances" in stdout
