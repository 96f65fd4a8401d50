"""
Evaluate trained checkpoints and print the numbers as tables (and, with output_file, as JSON):

  loss       the unmasking model's validation loss per validation stage (train.py's own number), its
             masked-diffusion negative ELBO in bits per character, and the autoregressive reference's
             bits per character on the same text: the gap between the two is the price of diffusion
  remasking  how well a remasking model finds wrong characters in validation text corrupted with
             random characters, and with the unmasking model's own predictions: AUROC, precision,
             recall and F1 at remasking_confidence_threshold
  samples    text from each remasking mode (random, intelligent, threshold, mixed) and each of the
             field's samplers (mdlm, confidence, remdm) at one budget of forward passes, scored by the
             reference model (bits/char), character entropy, valid words, distinct 4-grams and the
             longest passage copied from the training text
  compare    every sampler and remasking score at equal forward passes per sample (several budgets),
             swept over temperatures and seeds: quality with standard errors, each variant read off its
             frontier of reference bits/char against character entropy at the entropy of real text,
             the best learned remasker against the best sampler without one, and a detector table on
             the sampler's own wrong characters (compare.py holds the computations)
  test       bits per character on a benchmark's test split (text8) as the literature measures it: the
             NELBO and the reference's log-likelihood of every character of windows of the training
             length (eval_test_split.py)
  curve      runs alone, on curve_dir: every finished (seed, scale) pair of a compute curve, on the fair
             protocol (validation and training split) and the default sampler's samples; the gap's
             trend with training tokens and where it crosses 28% and 20% (eval_curve.py)
  plot=True  a PNG of sample quality against diffusion iterations per mode (samples); PNGs of quality
             against forward passes and of the frontiers (compare)

Everything is built from the checkpoints' saved config and meta (corpus, vocabulary, validation
rows), so no producer needs to run. Each section is a module of its own (eval_loss.py,
eval_remasking.py, eval_samples.py, eval_compare.py, eval_test_split.py, eval_curve.py); this script checks the settings, loads the
models and runs the sections asked for. See docs/evaluation.md.

$ python evaluate.py --out_dir=out-shakespeare-char-quick --reference_out_dir=out-autoregressive
$ python evaluate.py --remasking_out_dir=out-remasking-all-positions --remasking_checkpoint_name=newest \
    --sections=remasking,samples --output_file=eval.json
$ bash experiments/compare_samplers.sh    # the compare section with every model it compares
"""

from dataclasses import dataclass

import torch

import eval_curve
import eval_metrics as em
import eval_test_split
import generate
import generate_setup
from checkpoints import fit_problem, load_checkpoint, newest_checkpoint
from common import UserError, autocast_context, resolve_device, resolve_dtype, run_cli
from configurator import defaults_from, load_config
from eval_common import import_pyplot, load_corpus, val_windows
from eval_compare import check_compare_settings, compare_report, load_compare_models, plot_compare, print_compare
from eval_loss import loss_report, print_loss
from eval_remasking import print_remasking, remasking_report
from eval_samples import mode_config, plot_report, print_samples, samples_report
from prepare_streaming import provider_keys_if_known
from queue_io import atomic_json

# -----------------------------------------------------------------------------
# which models
out_dir = 'out-shakespeare-char-quick'
checkpoint_name = None           # the unmasking (or merged) model in out_dir; None = the newest, as in sample.py
remasking_checkpoint_name = None  # a remasking model (name in remasking_out_dir, or a path); 'newest'; None = none
remasking_out_dir = None         # None = out_dir
reference_checkpoint_name = 'newest'  # the autoregressive reference (name or path); 'newest' skips when there is none
reference_out_dir = 'out-autoregressive'
trust_checkpoint_pickle = False  # True: open checkpoints that only full unpickling opens (can run code: files you trust)
sections = 'loss,remasking,samples'  # which parts to run, comma-separated
# loss: the negative ELBO estimate
elbo_estimator = 'count'         # 'count': k ~ U{1..T} masked, weight T/k | 'time': t ~ U(0,1), weight 1/t (same bound)
elbo_draws = 2                   # masks per validation window (every window of the split is used)
eval_batch_size = 32             # rows per forward pass
# test: a benchmark's test split (the estimator, draws and batch size are the loss section's)
test_windows = None              # None: every window of the test split; N: the first N (a quick look)
# remasking: detection of wrong characters
corruption_ratio = 0.2           # share of validation positions corrupted
detection_rows = 256             # validation windows corrupted (each way)
remasking_confidence_threshold = 0.5  # p([WRONG]) above which a position counts as flagged (and threshold/mixed modes)
prediction_sampling = False      # predictions corruption: False = the unmasking model's argmax, True = a sample...
prediction_temperature = 1.0     # ...at this temperature
# samples
forward_budget = 40              # forward passes per sample in each mode (a remasking model costs one per iteration)
num_samples = 8
sequence_length = None           # None = the smallest block size of the models in use
temperature = 1.0
top_k = None
remasking_schedule = 'linear'
start_ratio = 1.0
end_ratio = 0.1
reveal_schedule = 'linear'       # mdlm / confidence / remdm, as in sample.py
choice_temperature = 4.5         # the confidence sampler's, as in sample.py (compare: also 0, the pure order)
remdm_eta = 0.05
remdm_window = (0.0, 1.0)
remdm_score = None               # None = 'wrong' on a merged checkpoint (its own [WRONG] scores), else 'random'
plot = False                     # PNG of sample quality against diffusion iterations (needs matplotlib)
plot_iterations = (5, 10, 20, 40)
plot_file = None                 # None = <out_dir>/eval_samples.png (curve: <curve_dir>/compute_curve.png)
# curve: every finished pair of a compute curve (runs named <kind>-s<seed>-x<scale>, as experiments/compute_curve.sh makes them)
curve_dir = None
# compare: every sampler and remasking score at equal forward passes per sample
compare_remasking_checkpoints = ()  # separate remasking models: checkpoint files or run folders (their newest); 'label=path' names one
compare_merged_checkpoint = None  # a merged model (file or run folder): it fills and scores in one pass
compare_budgets = (16, 32, 64)   # forward passes per sample (even: a separate remasking model costs 2 per iteration)
compare_temperatures = (0.7, 0.8, 0.9, 1.0)  # each variant's frontier is drawn over these
compare_seeds = 3                # seeds seed, seed + 1, ...: every number is a mean ± SE across them
compare_num_samples = 64         # samples per variant, budget, temperature and seed
compare_entropy_tolerance = 0.3  # a frontier is read up to this far (bits) outside its range of entropies
compare_fill_ratio_range = (0.1, 1.0)  # detector states: each row's masked share, uniform in this range
compare_plot_dir = None          # plot=True: compare_quality.png, compare_frontier.png; None = output_file's folder, else out_dir
# output and system
output_file = None               # write the whole report as JSON here
seed = 1337
device = 'auto'
dtype = 'auto'
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())

SECTIONS = ('loss', 'remasking', 'samples', 'compare', 'test', 'curve')


@dataclass
class Models:
    path: str
    checkpoint: dict
    unmasker: generate.Forward    # its .model is the GPT itself (the validation loss calls it)
    vocab: generate.Vocab
    remasking_path: str = None
    remasker: generate.Forward = None  # a merged model's: the unmasker itself (one pass scores both)
    reference_path: str = None
    reference: generate.Forward = None
    merged: bool = False          # one merged checkpoint is both the unmasking and the remasking model


# -----------------------------------------------------------------------------
# settings and models

def check_settings(cfg):
    wanted = [s.strip() for s in cfg.sections.split(',') if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown or not wanted:
        raise UserError(f"sections={cfg.sections!r}: use a comma-separated choice of {', '.join(SECTIONS)}")
    if cfg.elbo_estimator not in em.ELBO_ESTIMATORS:
        raise UserError(f"elbo_estimator={cfg.elbo_estimator!r} is unknown; use one of {em.ELBO_ESTIMATORS}")
    for key in ('elbo_draws', 'eval_batch_size', 'detection_rows', 'num_samples', 'compare_seeds', 'compare_num_samples'):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]!r} must be a positive integer")
    if not 0 < cfg.corruption_ratio <= 1:
        raise UserError(f"corruption_ratio={cfg.corruption_ratio!r} must be in (0, 1]")
    if not isinstance(cfg.forward_budget, int) or cfg.forward_budget < 2:
        raise UserError(f"forward_budget={cfg.forward_budget!r} must be an integer >= 2 (a remasking model "
                        f"costs 2 forward passes per iteration)")
    if not all(isinstance(n, int) and n >= 1 for n in cfg.plot_iterations) or not cfg.plot_iterations:
        raise UserError(f"plot_iterations={cfg.plot_iterations!r} must be positive integers, e.g. (5, 10, 20, 40)")
    if cfg.prediction_sampling and not cfg.prediction_temperature > 0:
        raise UserError(f"prediction_temperature={cfg.prediction_temperature!r} must be > 0")
    generate_setup.check_common_settings(cfg)
    for mode in generate.REMASKING_MODES:
        generate_setup.check_diffusion_settings(mode_config(cfg, mode, 1))
        generate_setup.remasking_mode(mode_config(cfg, mode, 1))  # the threshold must be a probability
    for sampler in generate.FIELD_SAMPLERS:  # remdm_score='wrong' is checked once the model is known
        generate_setup.check_field_settings(mode_config(cfg, sampler, 1), sampler, merged=True)
    if 'compare' in wanted:
        check_compare_settings(cfg)
    if 'curve' in wanted:
        eval_curve.check_settings(cfg, wanted)
    if 'test' in wanted:
        eval_test_split.check_settings(cfg)
    if cfg.plot:
        import_pyplot()  # fail now, not after minutes of evaluation
    return wanted


def load_reference_checkpoint(cfg):
    """(path, checkpoint) of the autoregressive reference, or (None, None) when there is none to use."""
    name = cfg.reference_checkpoint_name
    if not name:
        return None, None
    if name == 'newest':
        path = newest_checkpoint(cfg.reference_out_dir, 'autoregressive', cfg.trust_checkpoint_pickle)
        if path is None:
            print(f"note: no autoregressive checkpoint in {cfg.reference_out_dir}: the reference numbers are "
                  f"left out (train one with config/train_autoregressive.py)")
            return None, None
    else:
        path = generate_setup.find_checkpoint(cfg.reference_out_dir, name, 'autoregressive',
                                              cfg.trust_checkpoint_pickle)
    ckpt = load_checkpoint(path, trust_pickle=cfg.trust_checkpoint_pickle)
    if ckpt.get('training_type') != 'autoregressive':
        raise UserError(f"reference_checkpoint_name {path} is a {ckpt.get('training_type')!r} model, not an "
                        f"autoregressive one (config/train_autoregressive.py trains it)")
    return path, ckpt


def load_models(cfg, device):
    path, ckpt = generate_setup.load_unmasking_checkpoint(cfg)
    merged = ckpt.get('training_type') == 'merged'
    generate_setup.resolve_remdm_score(cfg, merged)  # as sample.py settles it for this checkpoint
    generate_setup.check_field_settings(mode_config(cfg, 'remdm', 1), 'remdm', merged)
    rpath, rckpt = generate_setup.load_remasking_checkpoint(cfg, path, ckpt)
    apath, ackpt = load_reference_checkpoint(cfg)
    generate_setup.resolve_sequence_length(cfg, ckpt, rckpt, ackpt)
    generate_setup.check_pair(path, ckpt, rpath, rckpt, cfg.sequence_length)
    window_length = ckpt['model_args']['block_size']  # the validation windows the reference scores
    problem = ackpt and fit_problem(ackpt, stoi=ckpt['meta']['stoi'],
                                    min_block_size=max(window_length, cfg.sequence_length))
    if problem:
        raise UserError(f"the reference {apath} cannot score {path}: {problem}; train it on the same corpus "
                        f"with the unmasking model's block_size")
    ctx = autocast_context(device, resolve_dtype(cfg.dtype, device))
    unmasker, remasker, reference = (generate_setup.load_forward(c, device, ctx) for c in (ckpt, rckpt, ackpt))
    if merged:
        rpath, remasker = path, unmasker  # its own remasker, from the same forward pass
    return Models(path, ckpt, unmasker, generate.Vocab.from_meta(ckpt['meta']), rpath, remasker, apath, reference,
                  merged=merged)


# -----------------------------------------------------------------------------

def main(argv=None):
    cfg = load_config(DEFAULTS, argv or [], other_keys=provider_keys_if_known)
    wanted = check_settings(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if wanted == ['curve']:
        return curve_main(cfg, device)
    models = load_models(cfg, device)
    compare_models = load_compare_models(cfg, models, device) if 'compare' in wanted else None
    corpus = windows = None
    if set(wanted) != {'test'}:  # the test section reads its own split
        corpus = load_corpus(models.checkpoint, device)
        windows = val_windows(corpus.val_ids, models.checkpoint['model_args']['block_size'])  # (N, T)
    print(f"evaluating {models.path}" + ''.join(f" | {kind} {p}" for kind, p in
                                                (('remasking', models.remasking_path),
                                                 ('reference', models.reference_path)) if p))
    report = dict(checkpoint=models.path, remasking_checkpoint=models.remasking_path,
                  reference_checkpoint=models.reference_path, settings=dict(cfg))
    if 'loss' in wanted:
        report['loss'] = loss_report(cfg, models, windows, device)
        print_loss(report['loss'], models.path)
    if 'remasking' in wanted:
        if models.remasker is None:
            print("\nremasking: no remasking_checkpoint_name given, section left out")
        else:
            report['remasking'] = remasking_report(cfg, models, windows, device)
            print_remasking(report['remasking'])
    if 'samples' in wanted:
        report['samples'] = samples_report(cfg, models, corpus, device)
        print_samples(report['samples'])
    if cfg.plot and 'samples' in wanted:
        report['plot'] = plot_report(cfg, models, corpus, device)
        print(f"\nwrote the plot to {report['plot']['file']}")
    if 'compare' in wanted:
        report['compare'] = compare_report(cfg, models, corpus, compare_models, device)
        print_compare(report['compare'])
        if cfg.plot:
            report['compare']['plots'] = plot_compare(cfg, report['compare'])
            print(f"\nwrote the plots to {', '.join(report['compare']['plots'].values())}")
    if 'test' in wanted:
        report['test'] = eval_test_split.test_report(cfg, models, device)
        eval_test_split.print_test(report['test'], models.path)
    return write_report(cfg, report)


def curve_main(cfg, device):
    """sections=curve: the points of curve_dir, each with the models load_models finds in its two runs."""
    report = dict(curve=eval_curve.curve_report(cfg, device, load_models), settings=dict(cfg))
    eval_curve.print_curve(report['curve'])
    return write_report(cfg, report)


def write_report(cfg, report):
    if cfg.output_file:
        atomic_json(report, cfg.output_file)
        print(f"wrote the report to {cfg.output_file}")
    return report


if __name__ == '__main__':
    run_cli(main)
