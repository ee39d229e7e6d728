"""The weight average of training (``scripts.training.weight_average``): the exponential moving average it keeps, its
place in the training state, its switch, and the training config validating and exporting it."""

import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from scripts.training.weight_average import WeightAverage
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT


def _net(value: float) -> torch.nn.Module:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(value)
        net.bias.fill_(value)
    return net


def _set(net: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


def test_average_follows_the_exponential_moving_average_from_the_first_update():
    net = _net(5.0)
    average = WeightAverage(net, decay=0.75)
    assert average.module is not net
    values = [1.0, 3.0, -1.0]
    for value in values:
        _set(net, value)
        average()
    expected = values[0]  # the first update copies the weights
    for value in values[1:]:
        expected = 0.75 * expected + 0.25 * value
    assert torch.allclose(average.module.weight, torch.full((1, 2), expected))
    assert torch.allclose(average.module.bias, torch.full((1,), expected))
    assert torch.equal(net.weight, torch.full((1, 2), -1.0))  # the trained network is untouched


def test_state_dict_round_trip_continues_the_same_average():
    net = _net(0.0)
    first = WeightAverage(net, decay=0.5)
    for value in (2.0, 4.0):
        _set(net, value)
        first()
    resumed = WeightAverage(_net(9.0), decay=0.5)
    resumed.load_state_dict(first.state_dict())
    _set(net, 8.0)
    first()
    resumed.network = net
    resumed()
    assert torch.equal(first.module.weight, resumed.module.weight)
    assert float(first.module.weight[0, 0]) == pytest.approx(0.5 * (0.5 * 2.0 + 0.5 * 4.0) + 0.5 * 8.0)


def test_a_checkpoint_without_an_average_restarts_it_at_the_next_update():
    net = _net(1.0)
    average = WeightAverage(net, decay=0.9)
    average()
    average.load_state_dict({})
    _set(net, 7.0)
    average()
    assert torch.equal(average.module.weight, torch.full((1, 2), 7.0))


def test_decay_zero_is_off_and_attaches_nothing():
    net = _net(1.0)
    average = WeightAverage(net, decay=0.0)
    assert not average.enabled and average.module is net and average.state_dict() == {}
    engine = Engine(lambda e, b: None)
    average.attach(engine)
    assert not engine.has_event_handler(average, Events.ITERATION_COMPLETED)
    average.load_state_dict({})  # a checkpoint of a run without an average resumes


def test_attached_average_updates_after_every_iteration():
    net = _net(0.0)
    average = WeightAverage(net, decay=0.5)

    def step(engine, batch):
        _set(net, float(batch))

    engine = Engine(step)
    average.attach(engine)
    engine.run([2.0, 6.0], max_epochs=1)
    assert torch.equal(average.module.weight, torch.full((1, 2), 4.0))


@pytest.mark.parametrize("decay", [1.0, -0.1, True, "0.9", None])
def test_bad_decay_is_one_line_naming_the_setting(decay):
    with pytest.raises(InputError, match="ema_decay"):
        WeightAverage(_net(0.0), decay=decay)


def test_training_config_validates_and_exports_the_average(tiny_acdc, tmp_path):
    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "train_teacher.json"))
    parser["dataset_dir"] = str(tiny_acdc)
    parser["output_dir"] = str(tmp_path)
    parser["spatial_size"] = [24, 24, 8]
    parser["channels"] = [4, 8, 8, 8]
    parser["device"] = "$torch.device('cpu')"
    parser["ema_decay"] = 0.99
    network = parser.get_parsed_content("network")
    average = parser.get_parsed_content("weight_average")
    assert average.network is network
    assert parser.get_parsed_content("val_network") is average.module is not network
    assert parser.get_parsed_content("train#state")["weight_average"] is average
    handlers = parser.get_parsed_content("train#handlers")
    assert any(h is average for h in handlers)
    exports = [h for h in parser.get_parsed_content("train#rank0_handlers") if type(h).__name__ == "ExportWeights"]
    assert exports and all(h.network is average.module for h in exports)

    parser["ema_decay"] = 0.0
    parser.parse()
    assert parser.get_parsed_content("val_network") is parser.get_parsed_content("network")
