"""bench/gpu_check.py: the CPU dry run end to end, and a failing check that stops nothing else."""
import glob
import os
import signal

import pytest

from bench import gpu_check
from conftest import run_script


def processes_mentioning(text):
    """Pids of the live processes whose command line contains `text` (Linux: read from /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if text in f.read().decode(errors='replace'):
                    found.append(int(pid))
        except OSError:
            pass  # gone meanwhile
    return found


def test_cpu_dry_run_passes_every_check_and_leaves_nothing_behind(tmp_path):
    # tens of seconds on 2 idle cores; the slack is for a machine loaded by other work
    code, out = run_script(['bench/gpu_check.py', '--device=cpu'], timeout=900, env={'TMPDIR': str(tmp_path)})
    results = [line for line in out.splitlines() if line.startswith(('PASS ', 'FAIL '))]
    n_checks = sum(len(phase.checks) for phase in gpu_check.PHASES)
    assert code == 0, out
    assert len(results) == n_checks and all(line.startswith('PASS') for line in results), out
    assert f"{n_checks} of {n_checks} checks passed" in out  # the summary table's last line
    assert 'CUDA was not checked (--device=cpu)' in out
    assert 'ran with compile=False (compiling takes minutes on a CPU)' in out
    assert not glob.glob(str(tmp_path / 'gpu_check_*')), "its temporary folder is left"
    if os.path.isdir('/proc'):  # every command had the folder in its arguments: none may still run
        assert processes_mentioning(str(tmp_path)) == []


def failing_command(checklist):
    checklist.run('failing', ['-c', 'import sys; sys.exit("error: this command fails")'])
    return 'never'


def test_a_failing_check_stops_nothing_and_sets_the_exit_code(monkeypatch, tmp_path, capsys):
    phases = [gpu_check.Phase(False, [('fails', failing_command), ('passes', lambda checklist: 'fine')]),
              gpu_check.Phase(True, [('runs anyway', lambda checklist: 'fine too')])]
    monkeypatch.setattr(gpu_check, 'PHASES', phases)
    monkeypatch.setattr(signal, 'signal', lambda *args: None)  # main's SIGTERM handler stays out of pytest
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    monkeypatch.setattr(gpu_check.tempfile, 'tempdir', None)  # read TMPDIR again
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(['--device=cpu', '--jobs=2'])
    out = capsys.readouterr().out
    assert exit_.value.code == 1
    assert 'FAIL  fails' in out and 'exit code 1: error: this command fails' in out, out
    assert 'PASS  passes' in out and 'PASS  runs anyway' in out, out
    assert '2 of 3 checks passed; failed: fails' in out, out
    assert not glob.glob(str(tmp_path / 'gpu_check_*'))


def test_made_up_corpus_is_the_same_every_time():
    """The dry run's corpus where Tiny Shakespeare is not at hand (as in a fresh clone without internet)."""
    text = gpu_check.made_up_text(gpu_check.TINY_CORPUS_CHARS)
    assert len(text) == gpu_check.TINY_CORPUS_CHARS and text == gpu_check.made_up_text(gpu_check.TINY_CORPUS_CHARS)
    assert len(set(text)) > 30 and text != gpu_check.made_up_text(gpu_check.TINY_CORPUS_CHARS, seed=1)
