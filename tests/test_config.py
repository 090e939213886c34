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
    with pytest.raises(
        InputError, match=r"tasks\.localization\.prior_shift: unknown key 'methd' \(did you mean 'method'\?\)"
    ):
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


def test_defaults_come_from_the_schema():
    """A key left out takes the schema's default, at any depth, and nested blocks appear whole."""
    cfg = demo()
    fish = cfg["tasks"]["fish_origin"]
    del fish["uncertain_below"], fish["loss"]["label_smoothing"]
    fish.pop("prior_shift")
    check_config(cfg, SCHEMA)
    assert fish["uncertain_below"] == 0.6 and fish["loss"]["label_smoothing"] == 0.0
    assert fish["prior_shift"] == {
        "method": "em",
        "tol": 1e-6,
        "max_iter": 1000,
        "bootstrap": 200,
        "check": True,
        "check_redraws": 50,
        "prior_strength": 0.0,
    }
    assert cfg["trainer"]["precision"] == "auto"


@pytest.mark.parametrize(
    "enc, want",
    [
        ({"type": "kmer"}, {"k": 6, "hidden": 256, "dropout": 0.3}),
        ({"type": "nearest"}, {"k": 6, "hidden": 0, "dropout": 0.3}),
        ({"type": "cnn"}, {"embed_dim": 32, "channels": 64, "dropout": 0.25, "attention_layers": 0}),
        ({"type": "kmer", "dropout": 0.1}, {"dropout": 0.1, "hidden": 256}),
    ],
)
def test_encoder_defaults_follow_its_type(enc, want):
    from barloc.config import with_defaults

    got = with_defaults({"kind": "multiclass", "alphabet": "dna", "encoder": enc})["encoder"]
    assert {k: got[k] for k in want} == want
    if enc["type"] != "cnn":
        assert "kernel_sizes" not in got  # no cnn settings on a k-mer model


def test_no_default_literals_left_in_the_steps():
    """Defaults live in the schema: a step reads its keys, it does not guess them."""
    import re

    for path in (REPO / "src/barloc/steps").glob("*.py"):
        text = path.read_text()
        assert not re.search(r'\.get\("(uncertain_below|batch_size|method|ece_bins|call_ratio)", ', text), path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t["localization"]["encoder"].update(type="nearest"),
            "tasks.localization.encoder.type: nearest compares DNA k-mer profiles",
        ),
        (
            lambda t: t["fish_origin"].update(membrane_head=True),
            "tasks.fish_origin.membrane_head: needs kind: multilabel",
        ),
        (
            lambda t: t["localization"]["prior_shift"].update(method="known"),
            "tasks.localization.prior_shift: method known needs target_priors",
        ),
        (
            lambda t: t["fish_origin"]["split"].update(val_fold=1),
            "tasks.fish_origin.split: unknown key 'val_fold'",
        ),
        (
            lambda t: t["fish_origin"]["split"].update(test_fold=7),
            "tasks.fish_origin.split.test_fold: 7 is not a fold of 0..4",
        ),
        (
            lambda t: t["fish_origin"]["loss"].update(type="bce"),
            "tasks.fish_origin.loss.type: bce is for sigmoid heads",
        ),
        (
            lambda t: t["fish_origin"]["loss"].update(softmax_weight=1.0),
            "tasks.fish_origin.loss.softmax_weight: adds a softmax term to sigmoid heads",
        ),
        (
            lambda t: (
                t["localization"]["loss"].update(softmax_weight=1.0),
                t["localization"]["calibration"].update(method="temperature"),
            ),
            "tasks.localization.calibration.method: temperature keeps the weighting offset as the only bias",
        ),
        (
            lambda t: t["localization"].update(alphabet="dna"),
            "tasks.localization.alphabet: a DeepLoc CSV holds proteins",
        ),
        (
            lambda t: t["fish_origin"]["encoder"].update(type="kmer", k=11, hidden=256),
            "tasks.fish_origin.encoder: a k-mer MLP at k = 11 reads 4^11 = 4,194,304 features",
        ),
        (
            lambda t: t["fish_origin"]["encoder"].update(type="nearest", k=12, hidden=64),
            "tasks.fish_origin.encoder: a k-mer MLP at k = 12 reads 4^12 = 16,777,216 features",
        ),
    ],
)
def test_cross_field_mistakes_are_caught_when_the_config_loads(edit, message):
    """Mistakes that span keys stop the run before ingest, not in train."""
    cfg = demo()
    edit(cfg["tasks"])
    with pytest.raises(InputError) as err:
        check_config(cfg, SCHEMA, "config.yaml")
    assert message in str(err.value) and "config.yaml" in str(err.value)


def test_each_rule_gets_only_its_keys():
    from barloc.config import rule_config

    cfg = check_config(demo(), SCHEMA)
    fish = cfg["tasks"]["fish_origin"]
    assert rule_config(fish, "calibrate") == {
        "calibration": {k: fish["calibration"][k] for k in ("method", "ece_bins", "call_ratio")},
        # auto judges a calibration by the calls the task makes: under its known priors, if any
        "prior_shift": {k: fish["prior_shift"][k] for k in ("method", "target_priors")},
    }
    assert rule_config(fish, "prior_shift") == {"prior_shift": fish["prior_shift"], "uncertain_below": 0.6}
    assert rule_config(fish, "predict") == {"train": {"batch_size": 32}}
    assert "uncertain_below" not in rule_config(fish, "train") and "prior_shift" not in rule_config(fish, "train")


def test_long_kmers_are_allowed_where_memory_does_not_grow_with_4_to_the_k():
    """The nearest encoder keeps sparse profiles, so k = 12 passes; so does a k-mer logistic
    regression at k = 9. k = 16 would overflow the int32 k-mer codes and is refused."""
    for enc in ({"type": "nearest", "k": 12}, {"type": "kmer", "k": 9, "hidden": 0}):
        cfg = demo()
        cfg["tasks"]["fish_origin"]["encoder"] = enc
        check_config(cfg, SCHEMA, "config.yaml")
    cfg = demo()
    cfg["tasks"]["fish_origin"]["encoder"]["k"] = 16
    with pytest.raises(InputError, match="16 is greater than the maximum of 15"):
        check_config(cfg, SCHEMA, "config.yaml")


def test_dilations_and_terminal_pool_are_for_the_cnn():
    cfg = demo()
    cfg["tasks"]["localization"].setdefault("encoder", {}).update(dilations=[2, 4], terminal_pool=50)
    check_config(cfg, SCHEMA)
    cfg["tasks"]["localization"]["encoder"].update(max_len=80, terminal_pool=41)
    with pytest.raises(InputError, match=r"encoder\.terminal_pool: 41 is more than half of max_len \(80\)"):
        check_config(cfg, SCHEMA, "config.yaml")
    for key, value in (("dilations", [2]), ("terminal_pool", 30)):
        cfg = demo()
        cfg["tasks"]["fish_origin"]["encoder"] = {"type": "kmer", key: value}
        with pytest.raises(InputError, match=rf"tasks\.fish_origin\.encoder\.{key}: .*encoder\.type: cnn"):
            check_config(cfg, SCHEMA, "config.yaml")


def test_blosum62_start_is_for_proteins():
    cfg = demo()
    cfg["tasks"]["localization"].setdefault("encoder", {})["embed_init"] = "blosum62"
    check_config(cfg, SCHEMA)
    cfg["tasks"]["fish_origin"]["encoder"] = {"type": "cnn", "embed_init": "blosum62"}
    with pytest.raises(InputError, match=r"tasks\.fish_origin\.encoder\.embed_init: BLOSUM62 .* alphabet: protein"):
        check_config(cfg, SCHEMA, "config.yaml")
    cfg = demo()
    cfg["tasks"]["localization"]["encoder"] = {"type": "kmer", "embed_init": "blosum62"}
    with pytest.raises(InputError, match=r"tasks\.localization\.encoder\.embed_init: .*encoder\.type: cnn"):
        check_config(cfg, SCHEMA, "config.yaml")


def test_mask_residues_is_for_the_cnn():
    cfg = demo()
    cfg["tasks"]["localization"]["train"]["mask_residues"] = 0.1
    check_config(cfg, SCHEMA)
    cfg["tasks"]["fish_origin"].setdefault("train", {})["mask_residues"] = 0.1
    cfg["tasks"]["fish_origin"]["encoder"] = {"type": "kmer"}
    with pytest.raises(InputError, match=r"tasks\.fish_origin\.train\.mask_residues: .*encoder\.type: cnn"):
        check_config(cfg, SCHEMA, "config.yaml")
