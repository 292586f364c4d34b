from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import apply_overrides, load_config, parse_override
from core.errors import ConfigError
from tests.conftest import DEMO_CONFIG


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def test_the_example_config_is_valid_and_complete() -> None:
    cfg = load_config(DEMO_CONFIG)
    assert cfg.model_name == "breast-cancer-classifier"
    assert len(cfg.data.numeric_features) == 30
    assert cfg.evaluation.resolved_direction == "maximize"
    assert cfg.resolve(cfg.validation.suite or "").is_file()


def test_unknown_keys_are_named_with_their_path(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["gates"]["max_regresion"] = 0.1
    with pytest.raises(ConfigError, match=r"gates\.max_regresion: unknown key"):
        load_config(_write(tmp_path, raw))


def test_wrong_types_are_named_with_their_path(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["split"]["test_size"] = "a quarter"
    with pytest.raises(ConfigError, match=r"split\.test_size"):
        load_config(_write(tmp_path, raw))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("model_name: [unclosed", "not readable YAML"),
        ("model_name: x\n", "data: required key is missing"),
    ],
)
def test_unreadable_configs_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_missing_file_points_at_the_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; copy config/project\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_semantic_checks(tmp_path: Path) -> None:
    base = {"model_name": "m", "data": {"source": "x.csv", "target": "y", "numeric_features": ["a"]}}
    bad_metric = {**base, "evaluation": {"primary_metric": "acuracy"}}
    with pytest.raises(ConfigError, match="unknown primary_metric 'acuracy'"):
        load_config(_write(tmp_path, bad_metric))
    time_split = {**base, "split": {"method": "time"}}
    with pytest.raises(ConfigError, match=r"needs data\.time_column"):
        load_config(_write(tmp_path, time_split))
    target_as_feature = {"model_name": "m", "data": {"source": "x", "target": "a", "numeric_features": ["a"]}}
    with pytest.raises(ConfigError, match="also listed as a feature"):
        load_config(_write(tmp_path, target_as_feature))


def test_overrides_are_parsed_as_yaml_scalars_and_validated() -> None:
    assert parse_override("training.params.C=0.5") == ("training.params.C", 0.5)
    assert parse_override("data.allow_extra_columns=true") == ("data.allow_extra_columns", True)
    assert parse_override("data.categorical_features=[a, b]") == ("data.categorical_features", ["a", "b"])
    cfg = load_config(DEMO_CONFIG, {"training.params.C": 0.5, "gates.min_score": 0.8})
    assert cfg.training.params["C"] == 0.5 and cfg.gates.min_score == 0.8
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_override("training.params.C")


def test_override_typos_are_refused_but_estimator_params_are_free_form() -> None:
    with pytest.raises(ConfigError, match=r"override key 'gates.min_scor' is unknown: no 'min_scor' under gates"):
        load_config(DEMO_CONFIG, {"gates.min_scor": 0.5})
    with pytest.raises(ConfigError, match="no 'trainig' under the top level"):
        load_config(DEMO_CONFIG, {"trainig.params.C": 1})
    with pytest.raises(ConfigError, match=r"gates\.min_score"):
        load_config(DEMO_CONFIG, {"gates.min_score": "high"})
    raw = apply_overrides({"training": {"params": {}}}, {"training.params.class_weight": "balanced"})
    assert raw["training"]["params"]["class_weight"] == "balanced"


@pytest.mark.parametrize(
    ("retraining", "message"),
    [
        (
            {"since": "2026-11-01", "window_days": 30},
            r"retraining: .*set either since \(2026-11-01 00:00 UTC\) or "
            r"window_days \(30\), not both",
        ),
        ({"since": "2026-11-30", "until": "2026-11-01"}, r"since \(2026-11-30 00:00\) must be before until"),
        ({"windw_days": 7}, r"retraining\.windw_days: unknown key"),
        ({"holdout_share_of_production": 1.0}, r"retraining\.holdout_share_of_production: Input should be less than 1"),
        ({"max_rows": 0}, r"retraining\.max_rows: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_retraining_section_names_the_key_and_the_fix(
    tmp_path: Path, retraining: dict[str, object], message: str
) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["retraining"] = {"include_production": True, **retraining}
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, raw))


def test_recency_weights_need_an_estimator_whose_fit_takes_sample_weight(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["retraining"] = {"include_production": True, "recency_half_life_days": 7}
    assert load_config(_write(tmp_path, raw)).retraining.recency_half_life_days == 7  # LogisticRegression: fine
    raw["training"] = {"estimator": "sklearn.neighbors.KNeighborsClassifier"}
    with pytest.raises(ConfigError, match=r"KNeighborsClassifier\.fit does not; remove recency_half_life_days or"):
        load_config(_write(tmp_path, raw))


def test_the_window_a_retrain_pins_is_a_valid_override() -> None:
    """What the retrain flow files on its request (``retraining.since``/``until`` in UTC) passes the schema."""
    from datetime import UTC, datetime

    from training.window import Window

    window = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, 12, 30, tzinfo=UTC))
    cfg = load_config(DEMO_CONFIG, {"retraining.include_production": True, **window.overrides()})
    assert (cfg.retraining.since, cfg.retraining.until) == (window.since, window.until)
    assert window.label == "2026-11-01 00:00..2026-11-30 12:30 UTC"
