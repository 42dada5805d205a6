"""The run configuration: presets, YAML files, dotted overrides and their errors."""

import pytest
import yaml

from fsvid.config import (
    ConfigError,
    RunConfig,
    load_config,
    preset_names,
    save_config,
    to_dict,
    validate,
)


def test_defaults_are_valid_and_round_trip(tmp_path):
    config = validate(RunConfig())
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text())["model"]["method"] == config.model.method


def test_overrides_change_single_fields_with_types():
    config = load_config(None, ["train.lr=0.01", "task.shot=1", "model.cardinalities=[2, 4]", "data.flip=true"])
    assert config.train.lr == 0.01 and isinstance(config.train.lr, float)
    assert config.task.shot == 1
    assert config.model.cardinalities == [2, 4]
    assert config.data.flip is True
    assert config.train.tasks == RunConfig().train.tasks  # untouched


def test_integer_and_exponent_forms_are_accepted_for_floats():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 0.001
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(None, ["train.lr=fast"])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.learning_rate=0.1"])
    message = str(error.value)
    assert "train.learning_rate" in message and "lr" in message and "tasks_per_step" in message


def test_unknown_section_lists_the_sections():
    with pytest.raises(ConfigError, match="valid keys: data, eval, model, name, output_dir, task, train"):
        load_config(None, ["optim.lr=0.1"])


def test_bad_choice_lists_the_choices():
    with pytest.raises(ConfigError, match="model.method: 'otam' is not one of prototype, trx, strm, mastaf"):
        load_config(None, ["model.method=otam"])


def test_bad_types_are_refused():
    with pytest.raises(ConfigError, match="task.way: expected an integer"):
        load_config(None, ["task.way=five"])
    with pytest.raises(ConfigError, match="data.flip: expected true or false"):
        load_config(None, ["data.flip=3"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.lr"])


def test_semantic_checks():
    with pytest.raises(ConfigError, match="cardinalities"):
        load_config(None, ["model.cardinalities=[9]", "data.frames=8"])
    with pytest.raises(ConfigError, match="crop"):
        load_config(None, ["data.crop=100", "data.resize=72"])
    with pytest.raises(ConfigError, match="task.way must be at least 2"):
        load_config(None, ["task.way=1"])


def test_presets_load_and_yaml_files_inherit(tmp_path):
    names = preset_names()
    assert "synthetic_trx" in names
    for name in names:
        assert isinstance(load_config(name), RunConfig)
    child = tmp_path / "child.yaml"
    child.write_text("inherit: synthetic_trx\ntrain:\n  lr: 0.5\n")
    config = load_config(child)
    assert config.train.lr == 0.5
    assert config.model.method == load_config("synthetic_trx").model.method


def test_missing_file_and_unknown_preset():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'nope'; presets: .*synthetic_trx"):
        load_config("nope")


def test_to_dict_is_plain():
    data = to_dict(RunConfig())
    assert yaml.safe_load(yaml.safe_dump(data)) == data


def test_settings_digest_names_the_settings_not_the_folder() -> None:
    from fsvid.config import settings_digest

    base = load_config("synthetic_trx")
    assert settings_digest(base) == settings_digest(load_config("synthetic_trx"))
    assert settings_digest(base) == settings_digest(load_config("synthetic_trx", ["name=other", "output_dir=/tmp/elsewhere"]))
    assert settings_digest(base) != settings_digest(load_config("synthetic_trx", ["model.backbone_chunks=2"]))
    assert settings_digest(base) != settings_digest(load_config("synthetic_trx", ["train.seed=1"]))
