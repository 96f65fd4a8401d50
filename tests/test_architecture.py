"""The import graph: three floors (ground, library, scripts), every import points down.

Read statically from the source (no module is imported here), so a test failure names the line
to change: a script imported by another module, a cycle, a dataset folder reaching into another.
"""
import ast
import glob
import os

import pytest

from conftest import REPO_ROOT

GROUND = ('common', 'configurator')        # import nothing of the project
SCRIPTS = ('train', 'sample', 'evaluate', 'prepare')  # imported by no other project module


def project_modules():
    """{module name: path} of every Python file of the project except the tests."""
    paths = glob.glob(os.path.join(REPO_ROOT, '*.py')) + glob.glob(os.path.join(REPO_ROOT, '*', '**', '*.py'),
                                                                    recursive=True)
    modules = {}
    for path in paths:
        rel = os.path.relpath(path, REPO_ROOT)
        if rel.startswith(('tests', '.')) or '/.' in rel:
            continue
        name = rel[:-3].replace(os.sep, '.').removesuffix('.__init__')
        modules[name] = path
    return modules


MODULES = project_modules()


def imported_names(path):
    """Dotted names a file imports: import statements and importlib.import_module('literal') calls."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{a.name}", node.lineno) for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', None)) == 'import_module':
            arg = node.args[0] if node.args else None
            yield (arg.value if isinstance(arg, ast.Constant) else '<dynamic>'), node.lineno


def project_imports(name):
    """[(imported project module, line)] of module `name`."""
    found = []
    for dotted, line in imported_names(MODULES[name]):
        while dotted and dotted not in MODULES and dotted != '<dynamic>':
            dotted = dotted.rpartition('.')[0]
        if dotted and dotted != name:
            found.append((dotted, line))
    return found


GRAPH = {name: sorted({m for m, _ in project_imports(name)}) for name in MODULES}


@pytest.mark.parametrize('name', GROUND)
def test_ground_floor_imports_nothing_of_the_project(name):
    assert project_imports(name) == []


def test_no_script_is_imported_by_another_module():
    offenders = [(name, m, line) for name in MODULES for m, line in project_imports(name) if m in SCRIPTS]
    assert offenders == [], "a function two scripts need belongs one floor down: " + repr(offenders)


def test_the_import_graph_has_no_cycle():
    state = {}  # name -> 'visiting' | 'done'

    def visit(name, path):
        state[name] = 'visiting'
        for child in GRAPH[name]:
            if child == '<dynamic>':
                continue
            if state.get(child) == 'visiting':
                raise AssertionError(f"import cycle: {' -> '.join(path + [child])}")
            if child not in state:
                visit(child, path + [child])
        state[name] = 'done'

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_no_dynamic_imports_outside_the_provider_loader():
    # the provider is found by its dataset name; nothing else should hide an import from this test
    dynamic = [name for name, children in GRAPH.items() if '<dynamic>' in children]
    assert dynamic == ['prepare_streaming'], dynamic


def test_dataset_folders_do_not_import_each_other():
    offenders = []
    for name in MODULES:
        parts = name.split('.')
        if parts[0] != 'data' or len(parts) < 3:
            continue
        for m, line in project_imports(name):
            other = m.split('.')
            if other[0] == 'data' and len(other) >= 3 and other[1] != parts[1]:
                offenders.append((name, m, line))
    assert offenders == [], "shared provider code belongs in a module directly under data/: " + repr(offenders)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(REPO_ROOT, 'config', '*.py'))), ids=os.path.basename)
def test_config_files_do_not_exec_others(path):
    with open(path, encoding='utf-8') as f:
        assert 'exec(' not in f.read()
