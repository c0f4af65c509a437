"""The eval's results as the console shows them at the end of a run."""

from diversens.evaluation.report import console_lines


def test_console_lines_give_each_tuned_model_its_deltas_and_length_change():
    result = {
        "base": "base",
        "delta_dd_all": {"base/ttr": [0.0, -0.8, 0.9], "dns/ttr": [0.634, -0.7, 1.93],
                         "dns/dsi": [-0.04, -1.6, 1.9], "divpo/ttr": [1.4, 0.4, 2.4]},
        "length_change_all": {"base": [0.3, -1.0, 1.5], "dns": [-2.14, -5.7, 1.6],
                              "divpo": [-0.8, -4.3, 3.4]},
    }  # fmt: skip
    assert console_lines(result) == [
        "ΔDD vs the reference (base at its map seeds), all tasks weighted equally [95% CI]; "
        "length change in words:",
        "  base (null): ttr +0.00 [-0.80, +0.90] · length +0.3 [-1.0, +1.5]",
        "  dns: ttr +0.63 [-0.70, +1.93] · dsi -0.04 [-1.60, +1.90] · length -2.1 [-5.7, +1.6]",
        "  divpo: ttr +1.40 [+0.40, +2.40] · length -0.8 [-4.3, +3.4]",
    ]
