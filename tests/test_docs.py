"""Every config key a user can set is documented somewhere in docs/, and the README's links work."""
import os
import re

import pytest

import sample
import train
from conftest import REPO_ROOT
from prepare_streaming import available_datasets, load_provider_class

DOCS = os.path.join(REPO_ROOT, 'docs')


def docs_text():
    return '\n'.join(open(os.path.join(DOCS, name), encoding='utf-8').read()
                     for name in sorted(os.listdir(DOCS)) if name.endswith('.md'))


def script_keys():
    keys = {('train.py', k) for k in train.DEFAULTS} | {('sample.py', k) for k in sample.DEFAULTS}
    try:
        import evaluate
        keys |= {('evaluate.py', k) for k in evaluate.DEFAULTS}
    except ModuleNotFoundError:
        pass
    for dataset in available_datasets():
        keys |= {(dataset, k) for k in load_provider_class(dataset).config_defaults()}
    return sorted(keys)


@pytest.mark.parametrize('owner,key', script_keys())
def test_every_config_key_is_documented(owner, key):
    assert re.search(rf'`(--)?{re.escape(key)}[`=]', docs_text()), f"{owner} key '{key}' is not documented in docs/"


def test_readme_links_point_at_files():
    readme = open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8').read()
    for target in re.findall(r'\]\(([^)#]+)\)', readme):
        assert os.path.exists(os.path.join(REPO_ROOT, target)), target
