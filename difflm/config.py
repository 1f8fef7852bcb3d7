"""Compose the run configuration: root file + stage files + group presets + dotted overrides.

`python train.py stage=vae data=adult model=tiny vae.max_steps=10` reads as:
  configs/train.yaml, configs/stage/*.yaml, then the chosen group files (data/, model/, budget/), then the
  overrides. A run directory that already holds a `config.yaml` lays it over those defaults, so a later stage or
  a resumed one sees the configuration the run started with; a new run with `upstream=<run>` starts from that
  run's. Values may use OmegaConf interpolations (`run=runs/sweeps/${oc.env:WANDB_RUN_ID}`). Unknown keys and
  wrong types are refused.
"""

import difflib
import re
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from difflm.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("data", "model", "budget")
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")
# sections whose keys are not fixed by configs/train.yaml: a budget's record types, the columns given temperatures
FREE_SECTIONS = ("by_record_type", "sample.column_temperature")


def parse_overrides(argv):
    """['a.b=1', 'data=adult'] -> [('a.b', 1), ('data', 'adult')], values read as YAML scalars."""
    overrides = []
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if not sep or not key:
            raise UserError(f"argument '{arg}' is not key=value (e.g. stage=vae or vae.max_steps=100)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:  # not YAML but a plain word, e.g. income=>50K (the shell ate the quotes)
            value = raw
        if isinstance(value, str) and "${" in value:
            value = _interpolated(arg, value)
        if isinstance(value, str) and SCIENTIFIC.fullmatch(raw):
            value = float(raw)  # YAML 1.1 reads 3e-3 (no dot) as a string
        overrides.append((key.strip(), value))
    return overrides


def _interpolated(arg, value):
    """A value with OmegaConf interpolations resolved, e.g. run=runs/sweeps/${oc.env:WANDB_RUN_ID}."""
    try:
        return OmegaConf.create({"value": value}).value
    except Exception as error:  # omegaconf raises several error types here, all of them the user's to fix
        raise UserError(f"argument '{arg}': cannot resolve it ({error.__class__.__name__}: "
                        f"{str(error).splitlines()[0]})") from None


def group_choices(group, config_dir=CONFIG_DIR):
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _group_file(group, choice, config_dir):
    path = config_dir / group / f"{choice}.yaml"
    if path.is_file():
        return OmegaConf.load(path)
    if group == "data" and str(choice).lower().endswith(TABLE_SUFFIXES):
        table = OmegaConf.load(config_dir / "data" / "table.yaml")
        table.data.name = Path(str(choice)).stem
        table.data.source = str(choice)
        return table
    choices = group_choices(group, config_dir)
    near = difflib.get_close_matches(str(choice), choices, n=3, cutoff=0.3) or choices
    hint = " or a path to a .csv/.parquet/.jsonl file" if group == "data" else ""
    raise UserError(f"unknown {group} '{choice}': choose one of {', '.join(near)}{hint}")


def all_keys(cfg, prefix=""):
    keys = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, DictConfig):
            keys.extend(all_keys(value, path + "."))
    return keys


def _unknown_key(key, cfg):
    near = difflib.get_close_matches(key, all_keys(cfg), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else "; see configs/train.yaml for the valid keys"
    return UserError(f"unknown config key '{key}'{hint}")


def _merge(base, other):
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as error:
        raise _unknown_key(str(error.full_key), base) from None


def _checked(key, old, new):
    """Return `new` converted to the type of the default `old`, or raise a UserError naming the key."""
    if old is None or new is None:
        return new
    expected = None
    if isinstance(old, bool):
        expected = "true or false" if not isinstance(new, bool) else None
    elif isinstance(old, int):
        expected = "an integer" if not isinstance(new, int) or isinstance(new, bool) else None
    elif isinstance(old, float):
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
        expected = "a number"
    elif isinstance(old, str):
        if isinstance(new, (dict, list)):
            expected = "a string"
        else:
            return str(new)
    elif isinstance(old, ListConfig):
        expected = "a list like [a,b]" if not isinstance(new, list) else None
    elif isinstance(old, DictConfig):
        expected = "one of its keys (it is a section)"
    if expected:
        raise UserError(f"config key '{key}' expects {expected}, got {new!r}")
    return new


def _record_type_section(cfg):
    """The budget preset's section for this record type (by_record_type.<data.record_type>) merged over cfg."""
    section = cfg.by_record_type.get(cfg.data.record_type)
    return _merge(cfg, section) if section is not None else cfg


def compose(argv, config_dir=CONFIG_DIR, inherit=True):
    """The resolved configuration for a command line (list of key=value strings); with inherit=False, a new run
    with upstream=<run> does not start from that run's configuration."""
    overrides = parse_overrides(argv)
    selected = {key: value for key, value in overrides if key in GROUPS}
    dotted = [(key, value) for key, value in overrides if key not in GROUPS]

    root = OmegaConf.load(config_dir / "train.yaml")
    run = next((value for key, value in dotted if key == "run"), root.run)
    upstream = next((value for key, value in dotted if key == "upstream"), None)
    # a new run with an upstream starts from the upstream's configuration
    starts = (run, upstream) if inherit else (run,)
    saved = next((path for path in (Path(str(d)) / "config.yaml" for d in starts if d) if path.is_file()), None)
    saved_cfg = OmegaConf.load(saved) if saved else None
    # the presets define the data and model sections, so they merge before keys are frozen; a saved run config
    # is laid over the defaults of its own presets, so keys added since it was written get their defaults
    choices = {**root.defaults, **(saved_cfg.get("defaults") or {} if saved_cfg else {})}
    cfg = root
    for stage_file in sorted((config_dir / "stage").glob("*.yaml")):
        cfg = OmegaConf.merge(cfg, OmegaConf.load(stage_file))
    for group, choice in choices.items():
        if choice is not None:
            cfg = OmegaConf.merge(cfg, _group_file(group, choice, config_dir))
    cfg = _record_type_section(cfg)
    if saved_cfg is not None:
        cfg = OmegaConf.merge(cfg, saved_cfg)
    OmegaConf.set_struct(cfg, True)
    for section in FREE_SECTIONS:  # e.g. a budget chosen on the command line brings its own record types
        OmegaConf.set_struct(OmegaConf.select(cfg, section), False)
    for group in (group for group in GROUPS if group in selected):  # data, model, budget: whatever the order typed
        cfg = _merge(cfg, _group_file(group, selected[group], config_dir))
        cfg.defaults[group] = str(selected[group])
    if selected:
        cfg = _record_type_section(cfg)
    for key, value in dotted:
        if key.rpartition(".")[0] in FREE_SECTIONS or key in FREE_SECTIONS and isinstance(value, dict):
            OmegaConf.update(cfg, key, value, merge=False)  # a new entry, or the whole section replaced
            continue
        missing = object()
        old = OmegaConf.select(cfg, key, default=missing)
        if old is missing:
            raise _unknown_key(key, cfg)
        OmegaConf.update(cfg, key, _checked(key, old, value), merge=False)
    return cfg


def upstream_notice(cfg, argv, config_dir=CONFIG_DIR):
    """For a new run with upstream=<run> (cfg: compose(argv)): a line naming what it takes from that run's
    configuration that the presets and the command line alone would set otherwise (easy to miss: a setting typed on
    the upstream's command line carries over silently). None for any other run, or when nothing differs."""
    if not cfg.upstream or (Path(str(cfg.run)) / "config.yaml").is_file():
        return None
    typed = compose(argv, config_dir, inherit=False).defaults
    presets = [f"{group}={choice}" for group, choice in cfg.defaults.items()  # named once, not key by key
               if choice is not None and typed.get(group) != choice]
    inherited, own = dotted_values(cfg), dotted_values(compose([*presets, *argv], config_dir, inherit=False))
    differences = presets + [f"{key}={value} (else {own.get(key)})" for key, value in inherited.items()
                             if own.get(key) != value and not key.startswith("defaults.")]
    if not differences:
        return None
    return (f"upstream={cfg.upstream}: this run starts from that run's configuration, which sets "
            + ", ".join(differences))


def dotted_values(cfg):
    """{'a.b': value} for every leaf of the resolved config (an empty section is a leaf)."""
    values = {key: OmegaConf.select(cfg, key) for key in all_keys(cfg)}
    return {key: plain(value) for key, value in values.items() if not isinstance(value, DictConfig) or not value}


def save(cfg, path):
    """Write the resolved config atomically."""
    path = Path(path)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)


def plain(node):
    """A config node as plain Python containers; a value that is not a node as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
