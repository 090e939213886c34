from pathlib import Path

import pytest
import yaml

from barloc.config import check_config
from barloc.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.mark.parametrize("path", ["config/config.yaml", "tests/integration/config.yaml"])
def test_shipped_configs_are_valid(path):
    check_config(yaml.safe_load((REPO / path).read_text()), SCHEMA)


def demo() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_typo_named_with_suggestion():
    cfg = demo()
    cfg["tasks"]["localization"]["prior_shift"]["methd"] = "em"
    with pytest.raises(InputError, match=r"tasks\.localization\.prior_shift: unknown key 'methd' \(did you mean 'method'\?\)"):
        check_config(cfg, SCHEMA, "config.yaml")


def test_missing_key_and_bad_value():
    cfg = demo()
    del cfg["tasks"]["fish_origin"]["alphabet"]
    cfg["tasks"]["localization"]["kind"] = "multi"
    with pytest.raises(InputError) as err:
        check_config(cfg, SCHEMA, "config.yaml")
    msg = str(err.value)
    assert "tasks.fish_origin: 'alphabet' is a required property" in msg
    assert "tasks.localization.kind: 'multi' is not one of" in msg


@pytest.mark.parametrize("method", ["temperature", "bcts", "vector"])
def test_calibration_methods(method):
    cfg = demo()
    cfg["tasks"]["fish_origin"]["calibration"]["method"] = method
    check_config(cfg, SCHEMA)
    cfg["tasks"]["fish_origin"]["calibration"]["method"] = "isotonic"
    with pytest.raises(InputError, match=r"tasks\.fish_origin\.calibration\.method: 'isotonic' is not one of"):
        check_config(cfg, SCHEMA, "config.yaml")


@pytest.mark.parametrize("value,ok", [("auto", True), (0, True), (0.35, True), (1, True), (1.5, False), ("fit", False)])
def test_call_ratio(value, ok):
    cfg = demo()
    cfg["tasks"]["localization"].setdefault("calibration", {})["call_ratio"] = value
    if ok:
        check_config(cfg, SCHEMA)
    else:
        with pytest.raises(InputError, match=r"tasks\.localization\.calibration\.call_ratio"):
            check_config(cfg, SCHEMA, "config.yaml")
