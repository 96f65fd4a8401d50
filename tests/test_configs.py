"""Every shipped config resolves for train.py (its own keys plus the provider's), without warnings."""
import glob
import os

import pytest

import train
from conftest import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, 'config', 'train_*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_shipped_config_resolves_for_train(path, capsys):
    cfg, provider_keys = train.resolve_config([path])
    assert cfg.out_dir.startswith('out-') and provider_keys
    assert 'warning' not in capsys.readouterr().err


def test_quick_configs_share_one_architecture():
    # vocab_size comes from the queue; attention_type is causal for the autoregressive model
    keys = [k for k in train.ARCH_KEYS if k not in ('vocab_size', 'attention_type')]
    arch = {path: tuple(train.resolve_config([path])[0][k] for k in keys)
            for path in CONFIGS if 'char_quick' in path or 'remasking' in path or 'autoregressive' in path}
    assert len(set(arch.values())) == 1, arch
