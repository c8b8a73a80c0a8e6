"""RunConfig: a run's settings, typed. The defaults per device, the --recipe preset under explicit values,
validate() naming the field it refuses, and the round trip through a checkpoint's config dict, including
checkpoints whose config holds only some of the fields."""
import pytest

from minivgg import recipe
from minivgg.config import DEVICE_DEFAULTS, FIELDS, RunConfig, resume_config

# The config dict of a checkpoint of `minivgg train --ratio 16 --epochs 1` holding only the flags' fields.
SAVED_CPU_RUN = dict(arch="d2l", ratio=16, resize=32, init="kaiming", output_std=0.01, seed=0, batch_size=256,
                     optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0, scheduler="cosine",
                     warmup_epochs=0.6, epochs=1, clip_grad_norm=5.0, recipe=None, crop=None, scale_jitter=None,
                     flip=False, intensity_shift=0.0, subtract_mean=False, binary=False, freeze_features=False)
# ... and of a run on a two-class image folder with --recipe paper, its pixel statistics computed.
SAVED_FOLDER_RUN = dict(SAVED_CPU_RUN, recipe="paper", crop=32, scale_jitter=[36, 44], resize=40, flip=True,
                        intensity_shift=0.1, subtract_mean=True, init="xavier", output_std=0.0, lr=0.01,
                        nesterov=False, weight_decay=5e-4, scheduler="plateau", warmup_epochs=0.0, clip_grad_norm=0.0,
                        data_dir="/data/pets", val_split=0.2, classes=["cat", "dog"], in_channels=3, num_classes=2,
                        pixel_mean=[0.5, 0.4, 0.3], pixel_covariance=[[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]])


@pytest.mark.parametrize("device, kind", [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda")])
def test_the_defaults_are_the_devices(device, kind):
    config = RunConfig().fill_defaults(device)
    for name, value in DEVICE_DEFAULTS[kind].items():
        assert getattr(config, name) == value, name
    assert (config.weight_decay, config.crop, config.flip, config.subtract_mean) == (0.0, None, False, False)
    assert (config.arch, config.ratio, config.seed) == ("d2l", 4, 0)


def test_a_recipe_fills_what_is_unset_and_explicit_values_win():
    paper = RunConfig(recipe="paper").fill_defaults("cpu")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.scheduler) == (0.01, 0.9, 5e-4, "plateau")
    assert (paper.crop, paper.scale_jitter, paper.resize) == (32, [36, 44], 40)  # tested at (36 + 44) / 2
    assert paper.flip and paper.subtract_mean and paper.epochs == DEVICE_DEFAULTS["cpu"]["epochs"]
    gpu = RunConfig(recipe="paper").fill_defaults("cuda")
    assert (gpu.crop, gpu.scale_jitter, gpu.resize) == (224, [256, 512], 384)
    mine = RunConfig(recipe="paper", lr=0.05, weight_decay=0.0, flip=False, crop=34, epochs=2).fill_defaults("cpu")
    assert (mine.lr, mine.weight_decay, mine.flip, mine.crop, mine.epochs) == (0.05, 0.0, False, 34, 2)


@pytest.mark.parametrize("field, value, words", [
    ("lr", -1.0, ["lr (--lr)", "> 0", "-1.0"]),
    ("lr", float("nan"), ["lr (--lr)", "finite", "nan"]),
    ("momentum", 1.0, ["momentum (--momentum)", "in [0, 1)", "1.0"]),
    ("batch_size", 0, ["batch_size (--batch-size)", "integer >= 1", "0"]),
    ("scheduler", "linear", ["scheduler (--scheduler)", "one of none, step, cosine, plateau", "'linear'"]),
    ("arch", "F", ["arch (--arch)", "'F'"]),
    ("scale_jitter", [44, 36], ["scale_jitter (--scale-jitter)", "MIN <= MAX", "[44, 36]"]),
    ("val_split", 1.5, ["val_split", "in (0, 1)", "1.5"]),
])
def test_validate_names_the_field_and_the_value(field, value, words):
    with pytest.raises(ValueError) as refused:
        RunConfig(**{field: value}).validate()
    for word in words:
        assert word in str(refused.value)


def test_to_dict_and_from_dict_round_trip():
    config = RunConfig(recipe="paper", ratio=16, data_dir="/data/pets", classes=["cat", "dog"]).fill_defaults("cpu")
    values = config.to_dict()
    assert set(values) == set(FIELDS)
    assert RunConfig.from_dict(values) == config


@pytest.mark.parametrize("saved", [SAVED_CPU_RUN, SAVED_FOLDER_RUN], ids=["fashion-mnist", "image folder"])
def test_from_dict_reads_a_checkpoints_config_dict(saved):
    config = RunConfig.from_dict(saved)
    for name, value in saved.items():
        assert getattr(config, name) == value, name
    assert config.to_dict() == {**RunConfig().to_dict(), **saved}


def test_from_dict_fills_missing_fields_and_names_unknown_ones():
    partial = {k: v for k, v in SAVED_CPU_RUN.items() if k not in ("clip_grad_norm", "binary", "flip")}
    config = RunConfig.from_dict(partial)
    assert (config.clip_grad_norm, config.binary, config.flip) == (None, False, None)
    assert config.fill_defaults("cpu").clip_grad_norm == DEVICE_DEFAULTS["cpu"]["clip_grad_norm"]
    with pytest.raises(ValueError, match="unknown keys colour, learning_rate"):
        RunConfig.from_dict(dict(SAVED_CPU_RUN, learning_rate=0.1, colour=True))


def test_a_resumed_run_keeps_its_config_but_epochs_and_data_dir():
    flags = RunConfig(arch="vgg11", ratio=4, lr=0.5, epochs=3, data_dir="/moved/pets")
    resumed = resume_config(SAVED_FOLDER_RUN, flags)
    assert (resumed.arch, resumed.ratio, resumed.lr) == ("d2l", 16, 0.01)  # the run's own
    assert (resumed.epochs, resumed.data_dir) == (3, "/moved/pets")
    assert resumed.pixel_mean == SAVED_FOLDER_RUN["pixel_mean"]
    assert resume_config(SAVED_CPU_RUN, RunConfig()).epochs == 1  # no --epochs: the run's
    partial = {k: v for k, v in SAVED_CPU_RUN.items() if k != "clip_grad_norm"}
    assert resume_config(partial, RunConfig(clip_grad_norm=2.0)).clip_grad_norm == 2.0  # a setting it lacks


def test_the_recipe_functions_take_a_dict_or_a_run_config():
    as_dict = recipe.fill_defaults({"recipe": "paper", "lr": 0.05}, "cpu")
    assert isinstance(as_dict, dict) and (as_dict["lr"], as_dict["crop"]) == (0.05, 32)
    config = RunConfig(recipe="paper", lr=0.05)
    assert recipe.fill_defaults(config, "cpu") is config and config.to_dict() == as_dict
    assert recipe.input_size(as_dict) == recipe.input_size(config) == 32
    assert recipe.describe_augment(as_dict) == recipe.describe_augment(config)
    with pytest.raises(ValueError, match="no init"):
        recipe.build_model(RunConfig(resize=32), "cpu")  # no hidden default: the config says how
