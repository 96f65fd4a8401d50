"""The shipped configs: flat, readable on their own, resolvable by every script, and equal where they must be."""
import ast
import glob
import os

import pytest

import configurator
import evaluate
import prepare
import sample
import train
from checkpoints import ARCH_KEYS
from conftest import REPO_ROOT
from prepare_streaming import provider_keys_if_known

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, 'config', '*.py')))
QUICK = ['train_shakespeare_char_quick', 'train_remasking_all_positions', 'train_remasking_corrupted_only',
         'train_remasking_from_predictions', 'train_autoregressive', 'train_remasking_sampler_states', 'train_merged']
BABY = ['train_char_diffusion', 'train_char_random_replacement_targets_full',
        'train_char_inference_replacement_targets_full_agressive']
TEXT8_QUICK = ['train_text8_quick', 'train_text8_quick_autoregressive']
TEXT8 = ['train_text8', 'train_text8_autoregressive']
# what must agree between configs whose models are used together: the corpus, the architecture and the optimiser
SHARED = [k for k in ARCH_KEYS if k not in ('vocab_size', 'attention_type')] + [
    'corpus', 'batch_size', 'gradient_accumulation_steps', 'dropout', 'learning_rate', 'max_iters', 'lr_decay_iters',
    'min_lr', 'warmup_iters', 'weight_decay', 'beta1', 'beta2', 'grad_clip']


def config_path(name):
    return os.path.join(REPO_ROOT, 'config', f'{name}.py')


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_is_a_flat_list_of_plain_assignments(path):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"{os.path.basename(path)} line {node.lineno}: only `name = value` lines belong in a config file"
        ast.literal_eval(node.value)  # a plain value, readable without running anything


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_shipped_config_resolves_for_every_script(path, capsys):
    cfg, provider_keys = train.resolve_config([path])
    assert cfg.out_dir.startswith('out-') and provider_keys
    prepare.resolve_config([path])
    for script in (sample, evaluate):
        configurator.load_config(script.DEFAULTS, [path], other_keys=provider_keys_if_known)
    assert 'warning' not in capsys.readouterr().err


@pytest.mark.parametrize('script', [train, sample, evaluate], ids=lambda m: m.__name__)
def test_script_keys_read_from_source_are_its_defaults(script):
    # the configurator learns the other scripts' keys from their source text, never by importing them
    assert configurator.script_keys(script.__file__) == set(script.DEFAULTS)


def test_the_words_recipe_is_the_quick_model_and_data_trained_longer():
    quick, words = (train.resolve_config([config_path(name)])[0]
                    for name in ('train_shakespeare_char_quick', 'train_shakespeare_char_words'))
    same = [k for k in SHARED if k not in ('max_iters', 'lr_decay_iters')] + [
        'unmasking_stages', 'validation_stages', 'use_all_stages_for_training', 'eval_iters']
    assert {k: words[k] for k in same} == {k: quick[k] for k in same}
    assert words.lr_schedule == 'wsd' and words.max_iters == 4 * quick.max_iters and words.data_dir != quick.data_dir


@pytest.mark.parametrize('group', [QUICK, BABY, TEXT8_QUICK, TEXT8],
                         ids=['quick', 'nanoGPT-scale', 'text8 quick', 'text8 literature-scale'])
def test_configs_used_together_share_architecture_and_optimiser(group):
    resolved = {name: train.resolve_config([config_path(name)])[0] for name in group}  # one resolve per config
    settings = {name: tuple(cfg[k] for k in SHARED) for name, cfg in resolved.items()}
    assert len(set(settings.values())) == 1, settings


@pytest.mark.parametrize('group', [TEXT8_QUICK, TEXT8], ids=['quick', 'literature-scale'])
def test_text8_twins_are_a_diffusion_model_and_an_autoregressive_one_on_text8(group):
    configs = [train.resolve_config([config_path(name)])[0] for name in group]
    assert [c.training_type for c in configs] == ['unmasking', 'autoregressive']
    assert [c.attention_type for c in configs] == ['bidirectional', 'causal']
    assert all(c.corpus == 'text8' for c in configs) and len({c.data_dir for c in configs}) == 2  # own queues
