"""
Config files and --key=value overrides, shared by every script. Imports nothing of the project.

A script keeps its defaults as plain lowercase module-level assignments at the top (nanoGPT
style) and collects them with `defaults_from(globals())`. Its `main(argv)` then calls
`load_config(DEFAULTS, argv)`, which

  1. executes each config file named in argv (plain Python, with `__file__` set), in order, once;
  2. loads the stage composition `composition_config = 'name'` names (data/compositions/name.py);
  3. applies `--key=value` overrides, parsed as Python literals (a value that is not a literal
     is taken as a string, so `--out_dir=out-x` and `--start=a=b` work);

and returns a `Config` (a dict whose keys also read as attributes). One config file serves
prepare.py, train.py, sample.py and evaluate.py alike, so a key set in a file is only an error when
*no* program reads it, and then just a warning (a config file's own helper variables, named
_like_this or bound only as loop variables, are not keys and draw none). On the command line an
unknown key or a value of the wrong type is an error (`ConfigError`) that names the key and the
closest known one.

The caller says which keys exist: its own defaults, the keys it passes on (`extra_defaults`:
train.py hands the provider's keys to the producer it starts) and the keys other programs read
(`other_keys`, for the warning only). Both may be functions of the values the config files set,
because the provider's keys depend on the `dataset` a file names. The other scripts' keys are read
from their source text (`script_keys`), never by importing them.
"""

import ast
import builtins
import difflib
import os
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
CONFIG_TYPES = (bool, int, float, str, tuple, list, dict, type(None))
# the scripts whose top-of-file defaults together make up the keys a config file may set
SCRIPT_FILES = ('train.py', 'sample.py', 'evaluate.py')
COMPOSITIONS_DIR = os.path.join(REPO_ROOT, 'data', 'compositions')
ALWAYS_KNOWN = ('dataset', 'composition_config')


class ConfigError(Exception):
    """A mistake in a config file or on the command line: printed as one line by common.run_cli."""
    user_error = True  # the mark run_cli looks for (this module imports nothing, not even UserError)


class Config(dict):
    """A dict of resolved config values that also reads as attributes: cfg.batch_size."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def is_config_key(name, value):
    # lowercase names only, so module constants such as IGNORE_INDEX are never taken for keys;
    # a leading underscore marks a config file's own helper variable
    return not name.startswith('_') and name == name.lower() and isinstance(value, CONFIG_TYPES)


def defaults_from(namespace):
    """The config keys of a script: its lowercase module-level values of plain types."""
    return {k: v for k, v in namespace.items() if is_config_key(k, v)}


def script_keys(path):
    """The config keys a script declares, read from its source: top-level `name = <literal>`."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    keys = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if is_config_key(node.targets[0].id, value):
                keys.add(node.targets[0].id)
    return keys


def all_script_keys():
    return set().union(*(script_keys(os.path.join(REPO_ROOT, name)) for name in SCRIPT_FILES
                         if os.path.isfile(os.path.join(REPO_ROOT, name))))


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
    raise ConfigError(f"{key} expects a {type(current).__name__} (like {current!r}) "
                      f"but {source} gives {type(value).__name__} {value!r}")


def compile_config_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        return compile(source, path, 'exec')
    except SyntaxError as e:
        text = (e.text or '').strip()
        raise ConfigError(f"config file {path} line {e.lineno}: {e.msg}" + (f": {text}" if text else '')) from None


def loop_variables(path):
    """Names a config file binds only as loop variables (`for attr_name in ...:`): the file's own
    helpers, never settings, since a setting is written `key = value`."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)  # compile_config_file has reported any syntax error
    looped, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            looped.update(names_bound_by(node.target))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                assigned.update(names_bound_by(target))
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)):
            assigned.update(names_bound_by(node.target))
    return looped - assigned


def names_bound_by(target):
    # Store context only: in `globals()[attr_name] = ...` the name is read, not bound
    return {node.id for node in ast.walk(target) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def exec_config_file(path, namespace):
    """Execute a config file on top of `namespace`; return the keys it set (its loop variables and
    _private names are not keys)."""
    code = compile_config_file(path)
    # earlier values are visible to the file, except those named like builtins: a `compile = False`
    # key must not break a config file that calls compile()
    scope = {k: v for k, v in namespace.items() if not hasattr(builtins, k)}
    scope.update(__file__=os.path.abspath(path), __name__='__config__')
    try:
        exec(code, scope)
    except Exception as e:  # a broken config file is the user's to fix: say where
        raise ConfigError(f"config file {path} failed: {type(e).__name__}: {e}") from None
    helpers = loop_variables(path)
    return {k: v for k, v in scope.items()
            if is_config_key(k, v) and k not in helpers and (k not in namespace or namespace[k] is not v)}


def composition_path(name, dataset=None):
    """data/compositions/<name>.py, the one shared place; a data/<dataset>/config/<name>.py of the
    user's own wins when it exists."""
    if dataset and isinstance(dataset, str):
        own = os.path.join(REPO_ROOT, 'data', dataset, 'config', f'{name}.py')
        if os.path.isfile(own):
            return own
    return os.path.join(COMPOSITIONS_DIR, f'{name}.py')


def load_composition(values):
    """Stage lists from the composition file named by `composition_config`, when one is named."""
    name = values.get('composition_config')
    if not name:
        return {}
    path = composition_path(name, values.get('dataset'))
    if not os.path.isfile(path):
        folder = COMPOSITIONS_DIR
        have = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py')) if os.path.isdir(folder) else []
        raise ConfigError(f"composition_config '{name}' not found at {path}; available: {have or 'none'}")
    return exec_config_file(path, values)


def split_argv(argv):
    files, overrides = [], []
    for arg in argv:
        if arg.startswith('--'):
            if '=' not in arg:
                raise ConfigError(f"'{arg}' needs a value: write {arg}=VALUE")
            key, text = arg[2:].split('=', 1)
            overrides.append((key, text))
        else:
            files.append(arg)
    return files, overrides


def resolve_keys(keys, values):
    """`keys` as given (a dict or iterable), or computed from the values when it is a function."""
    if keys is None:
        return {}
    return keys(values) if callable(keys) else keys


def warn_unread_keys(file_keys, known):
    for key, path in file_keys.items():
        if key not in known:
            print(f"warning: {path} sets '{key}', which no script reads{closest_key(key, known)}; "
                  f"name a helper variable _like_this to silence this", file=sys.stderr)


def load_config(defaults, argv, extra_defaults=None, other_keys=None, warn_unread=True):
    """Resolve a script's config: its defaults, then config files, composition, overrides.

    `extra_defaults` are keys the script passes on to someone else (train.py passes the provider's
    keys to the producer it starts), so they may be overridden on its command line. `other_keys`
    are keys only other programs read. Either may be a function of the values the config files set.
    """
    values = dict(defaults)
    files, overrides = split_argv(argv)
    file_keys = {}  # key -> the file that set it, for the type check and the unread-key warning
    for path in files:
        for key, value in exec_config_file(path, values).items():
            values[key] = value
            file_keys[key] = path
    for key, text in overrides:  # dataset and composition_config decide which keys exist
        if key in ALWAYS_KNOWN:
            values[key] = parse_value(text)
    base = dict(resolve_keys(extra_defaults, values))
    base.update(defaults)
    for key, value in base.items():
        values.setdefault(key, value)
    for key, path in file_keys.items():
        values[key] = coerce(key, values[key], base.get(key), path)
    for key, value in load_composition(values).items():
        values[key] = value
        file_keys.setdefault(key, f"composition {values['composition_config']}")
    for key, text in overrides:
        if key not in values:
            raise ConfigError(f"unknown config key '{key}'{closest_key(key, values)}")
        values[key] = coerce(key, parse_value(text), values[key], 'command line', text)
    if warn_unread:
        known = set(base) | set(resolve_keys(other_keys, values)) | all_script_keys() | set(ALWAYS_KNOWN)
        warn_unread_keys(file_keys, known)
    return Config(values)


def config_fingerprint(values):
    """A stable text form of some config values, for comparing runs (never Python's hash())."""
    return repr(sorted((k, v) for k, v in values.items()))
