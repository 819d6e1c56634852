"""The GAT network takes the layer it runs; GAT_LAYERS names them for configs and the CLI."""

import functools

import pytest
import torch

from attnlab._validate import lookup
from attnlab.models import GAT, GAT_LAYERS
from attnlab.models.gat import uniform_gat_conv
from attnlab.nn import GATConv, GATv2Conv
from attnlab.registry import REGISTRIES

EDGES = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])


def test_the_table_names_each_layer_once():
    assert list(GAT_LAYERS) == ["gat", "gat-uniform", "gatv2"]
    assert GAT_LAYERS["gat"] is GATConv and GAT_LAYERS["gatv2"] is GATv2Conv
    assert GAT_LAYERS["gat-uniform"] is uniform_gat_conv
    rows = dict(REGISTRIES["gat-layers"].rows())
    assert rows["gat-uniform"].startswith("GATConv whose weights are 1/degree")
    assert all(rows.values())
    with pytest.raises(ValueError, match="unknown GAT layer 'gcn'; known: gat, gat-uniform"):
        lookup(GAT_LAYERS, "gcn", "GAT layer")


@pytest.mark.parametrize("name", ["gat", "gat-uniform", "gatv2"])
def test_both_layers_are_built_by_the_injected_factory(name):
    net = GAT(5, 3, hidden=2, heads=4, output_heads=2, dropout=0.3, conv=GAT_LAYERS[name])
    cls = GATv2Conv if name == "gatv2" else GATConv
    assert type(net.conv1) is cls and type(net.conv2) is cls
    assert (net.conv1.heads, net.conv1.concat, net.conv2.heads, net.conv2.concat) == (
        4,
        True,
        2,
        False,
    )
    assert net.conv1.dropout == net.conv2.dropout == 0.3
    expected = "uniform" if name == "gat-uniform" else "learned"
    assert net.conv1.attention == net.conv2.attention == expected
    assert net(torch.rand(4, 5), EDGES).shape == (4, 3)


def test_a_partial_is_a_factory_and_parameters_are_created_as_before():
    torch.manual_seed(0)
    net = GAT(5, 3, hidden=2, heads=2, conv=functools.partial(GATConv, negative_slope=0.1))
    assert net.conv1.negative_slope == net.conv2.negative_slope == 0.1
    # The order of parameter creation: conv1 then conv2, each exactly as built alone.
    torch.manual_seed(0)
    conv1 = GATConv(5, 2, heads=2, dropout=0.6)
    conv2 = GATConv(4, 3, heads=1, concat=False, dropout=0.6)
    torch.manual_seed(0)
    default = GAT(5, 3, hidden=2, heads=2)
    for mine, alone in ((default.conv1, conv1), (default.conv2, conv2)):
        for (name, a), (_, b) in zip(mine.state_dict().items(), alone.state_dict().items()):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("conv", ["gat", GATConv(5, 2)], ids=["name", "module"])
def test_a_name_or_a_built_module_is_refused_in_one_line(conv):
    with pytest.raises(TypeError, match="conv must be a graph attention layer class or factory"):
        GAT(5, 3, conv=conv)
