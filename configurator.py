"""
Config files and --key=value overrides, shared by every script.

A script keeps its defaults as plain lowercase module-level assignments at the top
(nanoGPT style) and collects them with `defaults_from(globals())`. Its `main(argv)` then calls
`load_config(DEFAULTS, argv)`, which

  1. executes each config file named in argv (plain Python, with `__file__` set), in order;
  2. loads `data/<dataset>/config/<composition_config>.py` when `composition_config` is set;
  3. applies `--key=value` overrides, parsed as Python literals (a value that is not a literal
     is taken as a string, so `--out_dir=out-x` and `--start=a=b` work);

and returns a `Config` (a dict whose keys also read as attributes). One config file serves
prepare.py, train.py and sample.py alike, so a key set in a file is only an error when *no*
script reads it, and then just a warning. On the command line an unknown key or a value of the
wrong type is an error (`UserError`) that names the key and the closest known one.
"""

import ast
import builtins
import difflib
import importlib
import os
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
CONFIG_TYPES = (bool, int, float, str, tuple, list, dict, type(None))
# the scripts whose DEFAULTS together make up the keys a config file may set
SCRIPT_MODULES = ('train', 'sample', 'evaluate')


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, never as a traceback."""


def run_cli(main):
    """Run `main(argv)` as a command-line entry point: user errors become one line and exit 2."""
    try:
        main(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


class Config(dict):
    """A dict of resolved config values that also reads as attributes: cfg.batch_size."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def is_config_key(name, value):
    # lowercase names only, so module constants such as IGNORE_INDEX are never taken for keys
    return not name.startswith('_') and name == name.lower() and isinstance(value, CONFIG_TYPES)


def defaults_from(namespace):
    """The config keys of a script: its lowercase module-level values of plain types."""
    return {k: v for k, v in namespace.items() if is_config_key(k, v)}


def closest_key(key, known):
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def parse_value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # not a Python literal: a plain string such as out-dir or cuda:0


def coerce(key, value, current, source, text=None):
    """Check `value` against the type of the value it replaces; convert where that is lossless.

    `text` is the command-line spelling of `value`: a string key takes it as typed.
    """
    if current is None or value is None or type(value) is type(current):
        return value
    if isinstance(current, float) and type(value) is int:
        return float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(current)(value)
    if isinstance(current, str) and source == 'command line':
        return text if text is not None else str(value)  # --out_dir=1e3 means the folder '1e3'
    raise UserError(f"{key} expects a {type(current).__name__} (like {current!r}) "
                    f"but {source} gives {type(value).__name__} {value!r}")


def exec_config_file(path, namespace):
    """Execute a config file on top of `namespace`; return the keys it set."""
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist")
    with open(path, encoding='utf-8') as f:
        code = compile(f.read(), path, 'exec')
    # earlier values are visible to the file, except those named like builtins: a `compile = False`
    # key must not break a config file that calls compile()
    scope = {k: v for k, v in namespace.items() if not hasattr(builtins, k)}
    scope.update(__file__=os.path.abspath(path), __name__='__config__')
    try:
        exec(code, scope)
    except Exception as e:  # a broken config file is the user's to fix: say where
        raise UserError(f"config file {path} failed: {type(e).__name__}: {e}") from None
    return {k: v for k, v in scope.items()
            if is_config_key(k, v) and (k not in namespace or namespace[k] is not v)}


def composition_path(dataset, name):
    return os.path.join(REPO_ROOT, 'data', dataset, 'config', f'{name}.py')


def load_composition(values):
    """Stage lists from data/<dataset>/config/<composition_config>.py, when one is named."""
    name = values.get('composition_config')
    if not name:
        return {}
    dataset = values.get('dataset')
    if not dataset:
        raise UserError(f"composition_config '{name}' needs a dataset: set dataset = '<folder under data/>'")
    path = composition_path(dataset, name)
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        have = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py')) if os.path.isdir(folder) else []
        raise UserError(f"composition_config '{name}' not found at {path}; available: {have or 'none'}")
    return exec_config_file(path, values)


def split_argv(argv):
    files, overrides = [], []
    for arg in argv:
        if arg.startswith('--'):
            if '=' not in arg:
                raise UserError(f"'{arg}' needs a value: write {arg}=VALUE")
            key, text = arg[2:].split('=', 1)
            overrides.append((key, text))
        else:
            files.append(arg)
    return files, overrides


def provider_keys(dataset):
    """The keys the dataset's provider reads (empty when the dataset has no provider)."""
    if not dataset:
        return {}
    from prepare_streaming import load_provider_class
    try:
        return load_provider_class(dataset).config_defaults()
    except UserError:
        return {}


def all_known_keys(dataset):
    """Every key some script or the dataset's provider reads: what a config file may set."""
    known = set(provider_keys(dataset))
    for name in SCRIPT_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        known.update(getattr(module, 'DEFAULTS', {}))
    return known | {'dataset', 'composition_config'}


def warn_unread_keys(file_keys, dataset, script_keys=()):
    known = all_known_keys(dataset) | set(script_keys)  # the running script reads its own keys
    for key, path in file_keys.items():
        if key not in known:
            print(f"warning: {path} sets '{key}', which no script reads{closest_key(key, known)}",
                  file=sys.stderr)


def load_config(defaults, argv, extra_defaults=None, warn_unread=True):
    """Resolve a script's config: its defaults, then config files, composition, overrides.

    `extra_defaults` are keys the script passes on to someone else (train.py passes the
    provider's keys to the producer it starts), so they may be overridden on its command line.
    """
    base = dict(extra_defaults or {})
    base.update(defaults)
    values = dict(base)
    files, overrides = split_argv(argv)
    file_keys = {}  # key -> the file that set it, for the unread-key warning
    for path in files:
        for key, value in exec_config_file(path, values).items():
            values[key] = coerce(key, value, base.get(key), f"{path}")
            file_keys[key] = path
    for key, text in overrides:  # composition_config and dataset may come from the command line
        if key in ('composition_config', 'dataset'):
            values[key] = parse_value(text)
    for key, value in load_composition(values).items():
        values[key] = value
        file_keys.setdefault(key, f"composition {values['composition_config']}")
    for key, text in overrides:
        if key not in values:
            raise UserError(f"unknown config key '{key}'{closest_key(key, values)}")
        values[key] = coerce(key, parse_value(text), values[key], 'command line', text)
    if warn_unread:
        warn_unread_keys(file_keys, values.get('dataset'), base)
    return Config(values)


def config_fingerprint(values):
    """A stable text form of some config values, for comparing runs (never Python's hash())."""
    return repr(sorted((k, v) for k, v in values.items()))
