"""configurator.py: config files, composition files, --key=value overrides and their errors."""
import os

import pytest

import configurator
from common import run_cli
from configurator import ConfigError, load_config

DEFAULTS = dict(batch_size=64, learning_rate=1e-3, out_dir='out', compile=True, betas=(0.9, 0.95),
                stages=[], init_from=None, dataset='', composition_config='')


@pytest.fixture(autouse=True)
def known_keys_are_ours(monkeypatch):
    """Keys a config file may set: DEFAULTS plus what the config itself declares, not the keys of
    whatever train.py / sample.py / evaluate.py declare at the time (they are not what is tested)."""
    monkeypatch.setattr(configurator, 'SCRIPT_FILES', ())


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_defaults_from_takes_lowercase_plain_values():
    namespace = dict(batch_size=1, IGNORE_INDEX=-100, _private=2, os=os, main=print, betas=(0.9,))
    assert configurator.defaults_from(namespace) == dict(batch_size=1, betas=(0.9,))


def test_config_file_runs_with_its_own_path(tmp_path):
    config = write(tmp_path / 'cfg' / 'x.py', "import os\n"
                                               "out_dir = os.path.join(os.path.dirname(__file__), 'runs')\n"
                                               "batch_size = 8\n"
                                               "learning_rate = learning_rate * 2  # builds on the default\n")
    cfg = load_config(DEFAULTS, [config])
    assert cfg.out_dir == str(tmp_path / 'cfg' / 'runs')
    assert cfg.batch_size == 8 and cfg.learning_rate == 2e-3
    assert 'os' not in cfg and '__file__' not in cfg  # modules and dunders are not keys


def test_keys_named_like_builtins_do_not_shadow_them_in_config_files(tmp_path):
    # train.py has a `compile` key; a config file that calls compile() (to include another file)
    # must still get the builtin, and may still set the key
    shared = write(tmp_path / 'shared.py', "batch_size = 32\n")
    config = write(tmp_path / 'x.py', f"exec(compile(open({shared!r}).read(), 'shared', 'exec'))\ncompile = True\n")
    cfg = load_config(dict(DEFAULTS, compile=False), [config])
    assert cfg.batch_size == 32 and cfg.compile is True


def test_config_files_apply_in_order_then_overrides(tmp_path):
    first = write(tmp_path / 'a.py', "batch_size = 8\nout_dir = 'a'\n")
    second = write(tmp_path / 'b.py', "batch_size = 16\n")
    cfg = load_config(DEFAULTS, [first, second, '--out_dir=c'])
    assert (cfg.batch_size, cfg.out_dir) == (16, 'c')


@pytest.mark.parametrize('argument, key, expected', [
    ('--betas=(0.8,0.99)', 'betas', (0.8, 0.99)),
    ('--betas=[0.8,0.99]', 'betas', (0.8, 0.99)),          # a list where a tuple lives stays a tuple
    ("--stages=[{'type':'random'}]", 'stages', [{'type': 'random'}]),
    ('--init_from=None', 'init_from', None),
    ('--init_from=resume', 'init_from', 'resume'),          # no default type to check against
    ('--compile=False', 'compile', False),
    ('--out_dir=a=b', 'out_dir', 'a=b'),                    # '=' in a value: split at the first one
    ('--out_dir=out-x', 'out_dir', 'out-x'),                # not a literal: a plain string
    ("--out_dir='quoted'", 'out_dir', 'quoted'),
    ('--out_dir=1e3', 'out_dir', '1e3'),                    # a string key keeps the text as typed
    ('--out_dir=None', 'out_dir', None),
    ('--learning_rate=1', 'learning_rate', 1.0),            # int -> float is lossless
    ('--batch_size=32', 'batch_size', 32),
])
def test_overrides_are_literals(argument, key, expected):
    cfg = load_config(DEFAULTS, [argument])
    assert cfg[key] == expected and type(cfg[key]) is type(expected)


def test_unknown_command_line_key_names_the_closest_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'batch_sise' \(did you mean 'batch_size'\?\)"):
        load_config(DEFAULTS, ['--batch_sise=3'])


@pytest.mark.parametrize('argument', ['--batch_size=1.5', '--compile=1', '--batch_size=True',
                                      '--learning_rate=fast', '--betas=0.9'])
def test_wrong_type_on_the_command_line(argument):
    key = argument[2:].split('=')[0]
    with pytest.raises(ConfigError, match=rf"^{key} expects a .* but command line gives"):
        load_config(DEFAULTS, [argument])


def test_wrong_type_in_a_config_file(tmp_path):
    config = write(tmp_path / 'x.py', "batch_size = '64'\n")
    with pytest.raises(ConfigError, match=rf"batch_size expects a int .* but {config} gives str"):
        load_config(DEFAULTS, [config])


def test_override_without_value():
    with pytest.raises(ConfigError, match="'--compile' needs a value: write --compile=VALUE"):
        load_config(DEFAULTS, ['--compile'])


def test_unread_config_file_key_is_a_warning(tmp_path, capsys):
    config = write(tmp_path / 'x.py', "learning_rat = 0.1\nbatch_size = 8\nnew_knob = 3\n")
    cfg = load_config(DEFAULTS, [config])
    assert cfg.learning_rat == 0.1  # kept: another script may read it
    lines = capsys.readouterr().err.splitlines()
    hint = "; name a helper variable _like_this to silence this"
    assert lines == [f"warning: {config} sets 'learning_rat', which no script reads "
                     f"(did you mean 'learning_rate'?){hint}",
                     f"warning: {config} sets 'new_knob', which no script reads{hint}"]


def test_helper_variables_of_a_config_file_are_not_keys(tmp_path, capsys):
    # a private _name, and a loop variable (bound only by `for`), build other values: no warning, no key;
    # a plain assignment of an unknown name may be a typo, so it is still reported, with the convention
    config = write(tmp_path / 'x.py', "_base = 4\n"
                                      "batch_size = 2 * _base\n"
                                      "for attr_name in ['lr']:\n"
                                      "    stages = [attr_name]\n"
                                      "for i, j in [(1, 2)]:\n"
                                      "    pass\n"
                                      "config_path = 'x'\n"
                                      "for config_path in ['y']:\n"
                                      "    pass\n")
    cfg = load_config(DEFAULTS, [config])
    assert cfg.batch_size == 8 and cfg.stages == ['lr']
    assert not {'_base', 'attr_name', 'i', 'j'} & set(cfg) and cfg.config_path == 'y'
    err = capsys.readouterr().err
    assert err == (f"warning: {config} sets 'config_path', which no script reads; "
                   f"name a helper variable _like_this to silence this\n")


def test_config_file_key_is_overridable_on_the_command_line(tmp_path):
    config = write(tmp_path / 'x.py', "provider_knob = 3\n")
    assert load_config(DEFAULTS, [config, '--provider_knob=4'], warn_unread=False).provider_knob == 4


def test_extra_defaults_are_known_and_checked():
    extra = dict(max_backlog_files=8)
    assert load_config(DEFAULTS, ['--max_backlog_files=2'], extra_defaults=extra).max_backlog_files == 2
    by_dataset = lambda values: dict(max_backlog_files=8) if values['dataset'] == 'toy' else {}  # noqa: E731
    assert load_config(DEFAULTS, ['--dataset=toy', '--max_backlog_files=3'], extra_defaults=by_dataset).max_backlog_files == 3
    with pytest.raises(ConfigError):
        load_config(DEFAULTS, ['--max_backlog_files=two'], extra_defaults=extra)


@pytest.fixture
def compositions(tmp_path, monkeypatch):
    """The shared composition folder (data/compositions/) and the dataset folders live under tmp_path."""
    monkeypatch.setattr(configurator, 'COMPOSITIONS_DIR', str(tmp_path / 'compositions'))
    monkeypatch.setattr(configurator, 'REPO_ROOT', str(tmp_path))
    write(tmp_path / 'compositions' / 'two_stages.py',
          "stages = [dict(type='random', max_masked_ratio=0.5),\n"
          "          dict(type='span', spans_count=batch_size // 32)]\n")
    return tmp_path


def test_compositions_live_in_one_shared_folder():
    assert configurator.composition_path('x') == os.path.join(configurator.REPO_ROOT, 'data', 'compositions', 'x.py')
    assert configurator.composition_path('complex', 'char_random_replacement') == os.path.join(
        configurator.REPO_ROOT, 'data', 'compositions', 'complex.py')  # every provider finds it


def test_composition_config_from_a_config_file(compositions, capsys):
    config = write(compositions / 'x.py', "dataset = 'toy'\ncomposition_config = 'two_stages'\n")
    cfg = load_config(DEFAULTS, [config])
    assert cfg.stages == [dict(type='random', max_masked_ratio=0.5), dict(type='span', spans_count=2)]
    assert capsys.readouterr().err == ''


def test_composition_config_from_the_command_line(compositions):
    cfg = load_config(DEFAULTS, ['--composition_config=two_stages', '--batch_size=96'])
    assert cfg.stages[1] == dict(type='span', spans_count=2)  # sees the values before overrides
    assert cfg.batch_size == 96


def test_a_datasets_own_composition_wins(compositions):
    write(compositions / 'data' / 'toy' / 'config' / 'two_stages.py', "stages = [dict(type='span', spans_count=1)]\n")
    assert load_config(DEFAULTS, ['--dataset=toy', '--composition_config=two_stages']).stages[0]['spans_count'] == 1
    assert load_config(DEFAULTS, ['--dataset=other', '--composition_config=two_stages']).stages[1]['spans_count'] == 2


def test_missing_composition_lists_the_available_ones(compositions):
    expected = r"composition_config 'three' not found at .*available: \['two_stages'\]"
    with pytest.raises(ConfigError, match=expected):
        load_config(DEFAULTS, ['--dataset=toy', '--composition_config=three'])


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / 'nope.py')
    with pytest.raises(ConfigError, match=f"config file {missing} does not exist"):
        load_config(DEFAULTS, [missing])


def test_config_file_with_a_syntax_error_is_one_line(tmp_path):
    config = write(tmp_path / 'x.py', "batch_size = 8\nlearning_rate = (1e-3\n")
    with pytest.raises(ConfigError) as error:
        load_config(DEFAULTS, [config])
    assert str(error.value).startswith(f"config file {config} line 2: ")
    assert 'learning_rate = (1e-3' in str(error.value) and '\n' not in str(error.value)


def test_the_keys_of_the_scripts_are_read_from_their_source(tmp_path):
    script = write(tmp_path / 's.py', "import os\nbatch_size = 4\nname = 'x'\nIGNORE = 1\n_private = 2\n"
                                      "derived = os.getcwd()\nDEFAULTS = {}\n")
    assert configurator.script_keys(script) == {'batch_size', 'name'}


def test_broken_config_file_says_where(tmp_path):
    config = write(tmp_path / 'x.py', "batch_size = undefined_name\n")
    with pytest.raises(ConfigError, match=f"config file {config} failed: NameError"):
        load_config(DEFAULTS, [config])


def test_run_cli_prints_one_error_line_and_exits_2(capsys, monkeypatch):
    monkeypatch.setattr('sys.argv', ['script.py', '--batch_sise=3'])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda argv: load_config(DEFAULTS, argv))  # a ConfigError carries run_cli's user-error mark
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith("error: unknown config key 'batch_sise'")


def test_run_cli_passes_argv_and_returns_normally(monkeypatch):
    seen = []
    monkeypatch.setattr('sys.argv', ['script.py', 'a.py', '--k=1'])
    run_cli(seen.append)
    assert seen == [['a.py', '--k=1']]


def test_config_reads_as_attributes():
    cfg = load_config(DEFAULTS, [])
    assert cfg.batch_size == cfg['batch_size'] == 64
    with pytest.raises(AttributeError):
        cfg.nope


def test_fingerprint_is_order_independent():
    assert configurator.config_fingerprint(dict(a=1, b=2)) == configurator.config_fingerprint(dict(b=2, a=1))
