"""Config files written for the project the specification comes from: its `training_type = 'MLM'`,
`position_encoding = 'rotary'`, `composition_config = 'example'` for every provider, and the helper
variables its files compute (`config_path`, `attr_name`) train and prepare what they ask for."""
import os
import textwrap

import pytest

import prepare
import queue_io
import train
from common import UserError
from configurator import load_config

# how that project's config files load a stage composition: by hand, with helper variables
COMPOSITION_LOADER = '''
if composition_config is not None:
    import os
    config_path = os.path.join(os.path.dirname(__file__), '..', 'data', dataset, 'config',
                               f'{composition_config}.py')
    if os.path.exists(config_path):
        import importlib.util
        spec = importlib.util.spec_from_file_location(f"{composition_config}_config", config_path)
        config_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(config_module)

        # Import all global variables from the config
        for attr_name in dir(config_module):
            if not attr_name.startswith('_'):
                globals()[attr_name] = getattr(config_module, attr_name)
        print(f"Loaded composition config from {config_path}")
    else:
        print(f"Warning: composition config file not found at {config_path}")
else:
    use_all_stages_for_training = None
    unmasking_stages = None
    validation_stages = None
'''
# data/compositions/example.py, the shared composition every provider finds
EXAMPLE_STAGES = [{'type': 'random', 'max_masked_ratio': 0.5},
                  {'type': 'sticky', 'target_masked_ratio': 0.4, 'p1_probability': 0.1, 'p2_probability': 0.7},
                  {'type': 'span', 'spans_count': 3}]
HELPER_HINT = "name a helper variable _like_this to silence this"


def their_config(folder, name, dataset, body):
    """folder/config/<name>.py as that project writes them, with its own composition folder beside
    (so the loader above runs its loop), like a checkout of that project."""
    own_composition = folder / 'data' / dataset / 'config' / 'example.py'
    own_composition.parent.mkdir(parents=True, exist_ok=True)
    own_composition.write_text("use_all_stages_for_training = True\n"
                               "unmasking_stages = [{'type': 'random', 'max_masked_ratio': 0.9}]\n")
    path = folder / 'config' / f'{name}.py'
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"dataset = '{dataset}'\ncomposition_config = 'example'\n" + COMPOSITION_LOADER
                    + textwrap.dedent(body))
    return str(path)


def unread_key_warnings(err):
    return {line.split("'")[1] for line in err.splitlines() if 'which no script reads' in line}


def test_mlm_and_position_encoding_train_what_they_ask_for(tmp_path, capsys):
    config = their_config(tmp_path, 'train_char_random_replacement_targets_full_agressive', 'char_random_replacement', '''
        out_dir = 'out-char-random-replacement'
        dataset_partial_targets = False
        train_corruption_mixture = (0.4, 0.2, 0.4)
        attention_type = 'bidirectional'
        position_encoding = 'rotary'
        training_type = 'MLM' # Masked Language Modeling
        ignore_index = -100  # Default PyTorch ignore index
    ''')
    cfg, provider_keys = train.resolve_config([config])
    assert cfg.training_type == 'unmasking' and cfg.pos_encoding == 'rotary' and 'position_encoding' not in cfg
    assert cfg.unmasking_stages == EXAMPLE_STAGES and cfg.use_all_stages_for_training is True
    out, err = capsys.readouterr()
    notes = [line for line in out.splitlines() if line.startswith('note:')]
    assert notes == ["note: training_type='MLM' (masked-language-model training in the original project) "
                     "trains as training_type='unmasking'",
                     "note: position_encoding is the original project's name for pos_encoding: "
                     "training with pos_encoding='rotary'"]
    # what the file computes only to build other values is no key; settings nothing reads still are
    assert unread_key_warnings(err) == {'config_path', 'ignore_index'}
    assert all(HELPER_HINT in line for line in err.splitlines())
    assert 'attr_name' not in cfg and 'config_path' not in provider_keys


def test_position_encoding_on_the_command_line_and_a_disagreement(tmp_path):
    assert train.resolve_config(['--position_encoding=rotary'])[0].pos_encoding == 'rotary'
    with pytest.raises(UserError, match="position_encoding='learned'.*pos_encoding='rotary' disagree"):
        train.resolve_config(['--pos_encoding=rotary', '--position_encoding=learned'])


def test_inference_replacement_config_with_the_example_composition_prepares(tiny_corpus, tmp_path, capsys):
    run_dir = tmp_path / 'out-char-random-replacement'
    config = their_config(tmp_path, 'train_char_inference_replacement_targets_full_agressive',
                          'char_inference_replacement', f'''
        out_dir = {str(run_dir)!r}
        dataset_partial_targets = False  # Full identity targets for training split.
        train_corruption_mixture = (0.2, 0.2, 0.2, 0.4)  # (prediction, random, mask token, fragment) weights.
        checkpoint_dir = out_dir  # provider discovers the latest checkpoint within this directory
        inference_refresh_seconds = 20.0
        fallback_to_random = True
        fallback_original_token_probability_multiplier = 0.0
        fallback_extra_special_token_ids = None
        training_type = 'MLM'  # Masked Language Modeling
        batches_per_file = 2
        max_backlog_files = 3
    ''')
    tiny = [f'--input_file={tiny_corpus}', f'--data_dir={tmp_path / "q"}', '--batch_size=8', '--block_size=32',
            '--eval_iters=2', '--max_files=1']
    provider_cls, cfg = prepare.resolve_config([config, *tiny])
    assert cfg.unmasking_stages == EXAMPLE_STAGES and cfg.checkpoint_dir == str(run_dir)
    assert provider_cls(cfg).run() == 1  # no checkpoint yet: the random fallback fills the prediction branch
    meta = queue_io.read_meta(tmp_path / 'q')
    assert meta['corruption']['mode'] == 'stages' and meta['unmasking_stages'] == EXAMPLE_STAGES
    assert train.resolve_config([config, *tiny])[0].training_type == 'unmasking'
    assert unread_key_warnings(capsys.readouterr().err) == {'config_path'}


def test_a_key_named_like_a_setting_is_still_a_warning_when_read_in_the_file(tmp_path, capsys):
    # a misspelt key that the file also uses cannot be told from a helper: it stays a warning
    config = tmp_path / 'x.py'
    config.write_text("n_embed = 384\nn_head = n_embed // 64\n")
    load_config(train.DEFAULTS, [str(config)])
    assert "sets 'n_embed', which no script reads (did you mean 'n_embd'?)" in capsys.readouterr().err
