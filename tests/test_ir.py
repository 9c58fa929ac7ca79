"""The deployment graph validates itself: every inconsistency raises IRError naming the layer or register."""

import numpy as np
import pytest

from toolchain import ir
from toolchain.errors import ToolchainError


def _neurons(**kwargs) -> ir.CubaNeurons:
    return ir.CubaNeurons(**{"i_decay": 4096, "v_decay": 410, "vth_mant": 64, **kwargs})


def _dense(name="fc", out=2, inp=3, weight=None, **kwargs) -> ir.Dense:
    w = np.zeros((out, inp), dtype=np.int64) if weight is None else weight
    return ir.Dense(name, w, kwargs.pop("neurons", _neurons()), **kwargs)


def _net(layers, input_shape=(3,), encoding="spikes", **kwargs) -> ir.Network:
    return ir.Network("net", input_shape, encoding, 8, tuple(layers), **kwargs)


def test_a_valid_network_and_its_derived_values():
    bias = np.array([100, -4096], dtype=np.int64)
    neurons = _neurons(i_decay=1024, bias_mant=bias, bias_exp=2)
    fc = _dense(weight=np.array([[64, -256, 254], [2, 0, -2]]), neurons=neurons, weight_exp=-8)
    net = _net([fc], encoding="graded")
    assert net.num_classes == 2
    assert net.synaptic_layers() == [fc]
    assert net.layer("fc") is fc
    assert neurons.du_lava == 1023
    assert neurons.current_decay == 0.25
    assert neurons.threshold == 1.0
    np.testing.assert_array_equal(neurons.bias_float(), [100 * 4 / 4096, -4096 * 4 / 4096])
    np.testing.assert_array_equal(ir.weight_float(fc)[0], [1 / 256, -4 / 256, 254 / 64 / 256])
    assert _neurons().bias_float() is None


def test_conv_pool_flatten_shapes_chain():
    conv = ir.Conv(
        "conv1",
        np.ones((4, 2, 3, 3), np.int64),
        _neurons(),
        in_shape=(2, 9, 9),
        stride=(2, 2),
        padding=(1, 1),
    )
    assert conv.out_shape == (4, 5, 5)
    assert conv.kernel_size == (3, 3)
    pool = ir.Pool("pool1", "sum", 2, (4, 5, 5))
    assert pool.out_shape == (4, 2, 2)
    flat = ir.Flatten("flatten", (4, 2, 2))
    net = _net([conv, pool, flat, _dense("output", 3, 16)], input_shape=(2, 9, 9))
    assert [layer.name for layer in net] == ["conv1", "pool1", "flatten", "output"]
    assert net.num_classes == 3


def test_ir_error_is_a_toolchain_error():
    assert issubclass(ir.IRError, ToolchainError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"i_decay": -1},
            r"iDecay \(current decay x 4096\) = -1 is outside Loihi's register range \[0, 4096\]",
        ),
        ({"i_decay": 4097}, r"iDecay \(current decay x 4096\) = 4097 is outside"),
        (
            {"v_decay": 4097},
            r"vDecay \(voltage decay x 4096\) = 4097 is outside Loihi's register range \[0, 4096\]",
        ),
        (
            {"vth_mant": 2**18},
            r"vThMant \(threshold x 64\) = 262144 is outside Loihi's register range \[1, 262143\]",
        ),
        ({"vth_mant": 0}, r"vThMant \(threshold x 64\) = 0 is outside"),
        ({"bias_exp": 8}, r"bias_exp = 8 is outside Loihi's register range \[-8, 7\]"),
        ({"vth_mant": 64.0}, r"vThMant must be an integer, got 64.0"),
        ({"v_decay": True}, r"vDecay must be an integer, got True"),
        ({"ref_delay": 2}, r"refDelay = 2: only 1"),
        ({"graded_spike": True}, r"gradedSpike = True: only binary spikes"),
        ({"bias_mant": np.array([4096])}, r"bias mantissas span \[4096, 4096\], beyond the 13-bit register"),
        ({"bias_mant": np.array([-4097])}, r"beyond the 13-bit register \[-4096, 4095\]"),
        ({"bias_mant": np.array([0.5])}, r"bias mantissas must be integers, got dtype float64"),
    ],
)
def test_bad_registers_are_named(kwargs, message):
    with pytest.raises(ir.IRError, match=message):
        _neurons(**kwargs)


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (
            np.array([[0, 256, 0]]),
            r"layer 'fc': weights span \[0, 256\], beyond Loihi's 8-bit grid \[-256, 254\]",
        ),
        (np.array([[-258, 0, 0]]), r"weights span \[-258, 0\]"),
        (
            np.array([[0.0, 2.0, 4.0]]),
            r"layer 'fc': weights must be integers \(Loihi units\), got dtype float64",
        ),
        (np.zeros((3,), np.int64), r"layer 'fc': weights must be 2-D, got shape \(3,\)"),
        (np.zeros((0, 3), np.int64), r"layer 'fc': weights are empty"),
        ([[0, 2, 4]], r"layer 'fc': weights must be a numpy array, got list"),
    ],
)
def test_weights_off_the_grid_or_not_integers_are_refused(weight, message):
    with pytest.raises(ir.IRError, match=message):
        ir.Dense("fc", weight, _neurons())


def test_bias_shape_must_match_the_layer():
    with pytest.raises(ir.IRError, match=r"layer 'fc': bias has shape \(3,\), the layer's output \(2,\)"):
        _dense(neurons=_neurons(bias_mant=np.zeros(3, np.int64)))
    conv_neurons = _neurons(bias_mant=np.zeros((4,), np.int64))
    with pytest.raises(ir.IRError, match=r"layer 'c': bias has shape \(4,\), the layer's output \(4, 3, 3\)"):
        ir.Conv(
            "c",
            np.ones((4, 1, 3, 3), np.int64),
            conv_neurons,
            in_shape=(1, 5, 5),
            stride=(1, 1),
            padding=(0, 0),
        )


def test_shape_mismatches_name_the_layer():
    with pytest.raises(
        ir.IRError, match=r"layer 'second' expects input \(4,\), the layer before gives \(2,\)"
    ):
        _net([_dense("first"), _dense("second", 2, 4)])
    with pytest.raises(ir.IRError, match=r"layer 'fc' expects input \(3,\), the layer before gives \(5,\)"):
        _net([_dense()], input_shape=(5,))
    conv = ir.Conv(
        "c", np.ones((2, 1, 3, 3), np.int64), _neurons(), in_shape=(1, 6, 6), stride=(1, 1), padding=(0, 0)
    )
    with pytest.raises(
        ir.IRError, match=r"layer 'c' expects input \(1, 6, 6\), the layer before gives \(1, 4, 9\)"
    ):
        _net([conv, ir.Flatten("f", (2, 4, 4)), _dense("o", 2, 32)], input_shape=(1, 4, 9))
    with pytest.raises(ir.IRError, match=r"layer 'c': 3 input channels do not match weights \(2, 1, 3, 3\)"):
        ir.Conv(
            "c",
            np.ones((2, 1, 3, 3), np.int64),
            _neurons(),
            in_shape=(3, 6, 6),
            stride=(1, 1),
            padding=(0, 0),
        )
    with pytest.raises(ir.IRError, match=r"layer 'c': input \(1, 2, 2\) is smaller than its kernel"):
        ir.Conv(
            "c",
            np.ones((2, 1, 3, 3), np.int64),
            _neurons(),
            in_shape=(1, 2, 2),
            stride=(1, 1),
            padding=(0, 0),
        )
    with pytest.raises(ir.IRError, match=r"layer 'c': stride must have 2 entries, got \(1,\)"):
        ir.Conv(
            "c", np.ones((2, 1, 3, 3), np.int64), _neurons(), in_shape=(1, 6, 6), stride=(1,), padding=(0, 0)
        )
    with pytest.raises(ir.IRError, match=r"layer 'p': kernel 4 does not fit \(2, 3, 3\)"):
        ir.Pool("p", "sum", 4, (2, 3, 3))
    with pytest.raises(ir.IRError, match=r"layer 'p': pooling mode must be 'sum' or 'avg', got 'max'"):
        ir.Pool("p", "max", 2, (2, 4, 4))


def test_network_level_rules():
    with pytest.raises(ir.IRError, match=r"graded 8-bit input needs weight_exp = -8, got 0"):
        _net([_dense()], encoding="graded")
    with pytest.raises(ir.IRError, match=r"the last layer must be dense or conv"):
        _net([_dense("fc", 4, 3), ir.Flatten("f", (4,))])
    with pytest.raises(ir.IRError, match=r"layer names must be unique"):
        _net([_dense("fc", 3, 3), _dense("fc", 2, 3)])
    with pytest.raises(ir.IRError, match=r"input_encoding must be one of"):
        _net([_dense()], encoding="analog")
    with pytest.raises(ir.IRError, match=r"time_steps must be >= 1, got 0"):
        ir.Network("net", (3,), "spikes", 0, (_dense(),))
    with pytest.raises(ir.IRError, match=r"synapse_delay_steps must be >= 0"):
        _net([_dense()], synapse_delay_steps=-1)
    with pytest.raises(ir.IRError, match=r"layer 'fc': weight_exp = 8 is outside"):
        _dense(weight_exp=8)


@pytest.mark.parametrize(
    "module",
    [
        "toolchain.loihi_numbers",
        "toolchain.ir",
        "toolchain.formats.netx",
        "toolchain.formats.nir",
        "toolchain.formats.detect",
        "toolchain.run_folder",
        "toolchain.energy.model",
        "toolchain.commands.inspect",
    ],
)
def test_the_deployment_graph_and_its_numbers_need_no_torch(module):
    """The IR, Loihi's number format, the netx format and the run folder sit below training."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", f"importing {module} imports torch"
