"""
How a generation run is set up, apart from the loops in generate.py: sample.py and evaluate.py both
call it before they generate.

  - the settings checks and the remasking modes' flags (`remasking_mode`, `mode_settings`);
  - the sampler a checkpoint calls for (`resolve_sampler`, `sampler_and_mode`) and the settings only
    another sampler reads (`ignored_settings`);
  - finding and loading the unmasking / remasking pair, checked to fit each other (checkpoints.fit_problem),
    and the `generate.Forward` of a loaded checkpoint.

docs/sampling.md describes every setting.
"""

import os
import shlex

import torch

import sampling_utils as su
from checkpoints import describe_out_dir, fit_problem, load_checkpoint, model_from_checkpoint, newest_checkpoint
from common import UserError
from generate import FIELD_SAMPLERS, REMASKING_MODES, REMDM_SCORES, SAMPLERS, Forward
from objectives import MASK_FREE_CORRUPTIONS

UNMASKING_TYPES = ('unmasking', 'merged')  # training types that can fill [MASK] positions


# -----------------------------------------------------------------------------
# settings

def command_line(argv, script='sample.py', **settings):
    """`python <script> <argv>` with `settings` set: the command a user can run instead (argv's own
    entries for those keys are replaced, everything else is kept as given)."""
    kept = [arg for arg in argv if arg.split('=', 1)[0].lstrip('-') not in settings]
    added = [f"--{key}={value}" for key, value in settings.items()]
    return ' '.join(['python', script, *(shlex.quote(arg) for arg in kept + added)])


def remasking_mode(cfg, argv=None):
    """'random' | 'intelligent' | 'threshold' | 'mixed' from the three flags; contradictions are errors.
    `argv` (the user's command-line arguments) lets the mixed-mode errors name the full command that works."""
    threshold = cfg.remasking_confidence_threshold
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise UserError(f"remasking_confidence_threshold={threshold!r} must be a probability in (0, 1)")
    if cfg.use_mixed_remasking and not (cfg.use_intelligent_remasking and threshold is not None):
        missing = dict(use_intelligent_remasking=True) if not cfg.use_intelligent_remasking else {}
        if threshold is None:
            missing['remasking_confidence_threshold'] = 0.01  # the guide's mixed examples use 0.01
        argv = ['--use_mixed_remasking=True'] if argv is None else argv
        raise UserError(f"use_mixed_remasking=True takes its candidates from intelligent remasking above a "
                        f"threshold, so it needs {' and '.join(f'{k}={v}' for k, v in missing.items())} as well; "
                        f"the full command: {command_line(argv, **missing)}")
    if not cfg.use_intelligent_remasking and threshold is not None:
        raise UserError("remasking_confidence_threshold is only used with use_intelligent_remasking=True; "
                        "set it, or drop the threshold for random remasking")
    flags = (bool(cfg.use_intelligent_remasking), bool(cfg.use_mixed_remasking), threshold is not None)
    return next(mode for mode, mode_flags in REMASKING_MODES.items() if mode_flags == flags)


def mode_settings(mode, threshold):
    """The flags that select `mode`; `threshold` is kept only by the modes that take one."""
    intelligent, mixed, takes_threshold = REMASKING_MODES[mode]
    return dict(use_intelligent_remasking=intelligent, use_mixed_remasking=mixed,
                remasking_confidence_threshold=threshold if takes_threshold else None)


def check_positive_int(cfg, key):
    if not isinstance(cfg[key], int) or cfg[key] < 1:
        raise UserError(f"{key}={cfg[key]!r} must be a positive integer")


def check_non_negative(cfg, key, hint):
    if not isinstance(cfg[key], (int, float)) or cfg[key] < 0:
        raise UserError(f"{key}={cfg[key]!r} must be a number >= 0 ({hint})")


def check_schedule(name, kind, start, end):
    problem = su.check_schedule(name, kind, start, end)
    if problem:
        raise UserError(problem)


def check_common_settings(cfg):
    check_positive_int(cfg, 'num_samples')
    check_non_negative(cfg, 'temperature', '0 = argmax')
    if cfg.top_k is not None and (not isinstance(cfg.top_k, int) or cfg.top_k < 1):
        raise UserError(f"top_k={cfg.top_k!r} must be a positive integer or None")


def check_diffusion_settings(cfg):
    check_positive_int(cfg, 'diffusion_iterations')
    check_schedule('remasking_schedule', cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio)


def check_field_settings(cfg, sampler, merged):
    """The settings of mdlm / confidence / remdm; `merged`: the unmasking checkpoint is a merged model."""
    check_positive_int(cfg, 'diffusion_iterations')
    check_schedule('reveal_schedule', cfg.reveal_schedule, cfg.start_ratio, 0.0)
    check_non_negative(cfg, 'choice_temperature', '0 = the pure confidence order; MaskGIT uses 4.5')
    if sampler != 'remdm':
        return
    if not isinstance(cfg.remdm_eta, (int, float)) or not 0 <= cfg.remdm_eta <= 1:
        raise UserError(f"remdm_eta={cfg.remdm_eta!r} must be a probability in [0, 1] (ReMDM uses 0.004-0.04)")
    window = cfg.remdm_window
    if not (isinstance(window, (tuple, list)) and len(window) == 2
            and all(isinstance(v, (int, float)) for v in window) and 0 <= window[0] <= window[1] <= 1):
        raise UserError(f"remdm_window={window!r} must be (from, to) with 0 <= from <= to <= 1: the share of the "
                        f"iterations in which remdm remasks, e.g. (0.0, 1.0) for all of them")
    if cfg.remdm_score is not None and cfg.remdm_score not in REMDM_SCORES:  # None: settled by resolve_remdm_score
        raise UserError(f"remdm_score={cfg.remdm_score!r} is unknown; use one of {', '.join(REMDM_SCORES)}, or None "
                        f"('wrong' on a merged checkpoint, else 'random')")
    if cfg.remdm_score == 'wrong' and not merged:
        raise UserError("remdm_score='wrong' takes p([WRONG]) from the unmasking model's own forward pass, which "
                        "only a merged checkpoint (training_type='merged') gives; pass one as checkpoint_name, or "
                        "use remdm_score='confidence'")


def check_edit_settings(cfg):
    check_positive_int(cfg, 'max_iterations')
    check_schedule('insert_schedule', cfg.insert_schedule, cfg.insert_ratio_start, cfg.insert_ratio_end)
    check_schedule('delete_schedule', cfg.delete_schedule, cfg.delete_ratio_start, cfg.delete_ratio_end)
    check_schedule('noise_schedule', cfg.noise_schedule, cfg.noise_start, cfg.noise_end)
    if cfg.cooling_distance < 0 or cfg.cooling_iterations < 0:
        raise UserError("cooling_distance and cooling_iterations must be >= 0")
    if cfg.use_intelligent_remasking or cfg.use_mixed_remasking or cfg.remasking_checkpoint_name:
        raise UserError("the edit sampler does not remask; drop the remasking settings or set sampler='diffusion'")


def edit_capable(ckpt):
    """Full targets on mask-free corruption: the model predicts the original character at every position, so
    it can edit. A merged model's queue (sampler_states) is one too, but it is trained to answer [WRONG], not
    the original, at a wrong character: it is an unmasking model with its own remasker, never an edit model."""
    meta = ckpt['meta']
    return (ckpt.get('training_type') != 'merged' and meta.get('label_semantics') == 'full'
            and meta.get('corruption_type') in MASK_FREE_CORRUPTIONS)


def resolve_sampler(cfg, ckpt, path):
    """The sampler (one of SAMPLERS) for the unmasking (or merged) checkpoint `ckpt` at `path`."""
    merged = ckpt.get('training_type') == 'merged'
    if cfg.sampler == 'auto':
        if edit_capable(ckpt):
            return 'edit'
        # set = neither None nor False (`is`, so that a threshold of 0.0 counts as set)
        asks_for_diffusion = any(cfg.get(key) is not None and cfg.get(key) is not False for key in DIFFUSION_SELECTORS)
        if asks_for_diffusion:
            return 'diffusion'
        return AUTO_MERGED_SAMPLER if merged else AUTO_SAMPLER
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"sampler={cfg.sampler!r} is unknown; use one of 'auto', {', '.join(map(repr, SAMPLERS))}")
    if cfg.sampler == 'edit' and not edit_capable(ckpt):
        meta = ckpt['meta']
        found = ("is a merged model, which answers [WRONG] at a wrong character instead of the original; use "
                 "sampler='auto' (remdm by its own [WRONG] scores) or 'diffusion'" if merged else
                 f"has corruption_type={meta.get('corruption_type')!r}, label_semantics="
                 f"{meta.get('label_semantics')!r}; use sampler='diffusion'")
        raise UserError(f"sampler='edit' needs a model trained with full targets on random-replacement corruption; "
                        f"{path} {found}")
    return cfg.sampler


def resolve_remdm_score(cfg, merged):
    """Settle cfg.remdm_score: None becomes 'wrong' on a merged checkpoint (remdm remasks what the model's own
    [WRONG] head flags, in the pass that fills: the best measured for merged models, docs/results.md section 4)
    and 'random' (ReMDM's own rule) on an unmasking one."""
    if cfg.remdm_score is None:
        cfg['remdm_score'] = 'wrong' if merged else 'random'
    return cfg.remdm_score


def sampler_and_mode(cfg, ckpt, path, argv=None):
    """(sampler, remasking mode) for the unmasking checkpoint `ckpt` at `path`, after checking that
    sampler's settings (remdm's score is settled here); only the diffusion sampler has a mode.
    `argv`: see remasking_mode."""
    sampler = resolve_sampler(cfg, ckpt, path)
    merged = ckpt.get('training_type') == 'merged'
    if sampler == 'edit':
        check_edit_settings(cfg)
        return sampler, None
    if sampler in FIELD_SAMPLERS:
        if sampler == 'remdm':
            resolve_remdm_score(cfg, merged)
        check_field_settings(cfg, sampler, merged)
        return sampler, None
    check_diffusion_settings(cfg)
    return sampler, remasking_mode(cfg, argv)


# the settings only some samplers (or remasking modes) read, and who reads them: a user who changes one
# that the chosen sampler does not read hears so once (ignored_settings)
EDIT_KEYS = ('max_iterations', 'insert_ratio_start', 'insert_ratio_end', 'delete_ratio_start', 'delete_ratio_end',
             'noise_start', 'noise_end', 'insert_schedule', 'delete_schedule', 'noise_schedule', 'cooling_distance',
             'cooling_iterations')
FLAG_KEYS = ('use_intelligent_remasking', 'use_mixed_remasking', 'remasking_confidence_threshold')
SCHEDULE_KEYS = ('remasking_schedule', 'end_ratio')
REMASKER_KEYS = ('remasking_checkpoint_name', 'remasking_out_dir')
REMDM_KEYS = ('remdm_eta', 'remdm_window', 'remdm_score')
# sampler='auto', unless one of the seed's remasking settings (a flag, a threshold, a remasking model) asks for the
# diffusion loop: the sampler that measured best at the default budget. For an unmasking model the confidence
# sampler (docs/results.md, "The first run"); for a merged one remdm remasking by its own [WRONG] scores
# (remdm_score=None settles to 'wrong'), the only learned remasker ahead of every sampler without one
# (docs/results.md section 4, at 32 forward passes per sample; sample.py's default is 30)
AUTO_SAMPLER = 'confidence'
AUTO_MERGED_SAMPLER = 'remdm'
DIFFUSION_SELECTORS = FLAG_KEYS + ('remasking_checkpoint_name',)
READERS = {
    **{key: "sampler='edit'" for key in EDIT_KEYS},
    **{key: "sampler='diffusion'" for key in FLAG_KEYS},
    **{key: "sampler='diffusion' in random, intelligent or mixed mode" for key in SCHEDULE_KEYS},
    **{key: "sampler='diffusion' with use_intelligent_remasking=True" for key in REMASKER_KEYS},
    **{key: "sampler='remdm'" for key in REMDM_KEYS},
    'reveal_schedule': "sampler='mdlm', 'confidence' or 'remdm'",
    'choice_temperature': "sampler='confidence'",
    'start_ratio': "a schedule: sampler='diffusion' (not threshold mode), 'mdlm', 'confidence' or 'remdm'",
    'diffusion_iterations': "sampler='diffusion', 'mdlm', 'confidence' or 'remdm'",
}


def settings_read(sampler, mode):
    """The keys of READERS that `sampler` (in remasking `mode`) reads."""
    if sampler == 'edit':
        return EDIT_KEYS
    if sampler in FIELD_SAMPLERS:
        return (('diffusion_iterations', 'start_ratio', 'reveal_schedule') + (REMDM_KEYS if sampler == 'remdm' else ())
                + (('choice_temperature',) if sampler == 'confidence' else ()))
    read = ('diffusion_iterations',) + FLAG_KEYS
    read += SCHEDULE_KEYS + ('start_ratio',) if mode != 'threshold' else ()  # threshold mode has no schedule
    read += REMASKER_KEYS if mode != 'random' else ()  # random mode never reads [WRONG] scores
    return read


def ignored_settings(cfg, defaults, sampler, mode):
    """[(key, who reads it)] for the keys changed from `defaults` that `sampler` / `mode` does not read."""
    read = settings_read(sampler, mode)
    return [(key, reader) for key, reader in READERS.items()
            if key not in read and key in cfg and cfg[key] != defaults.get(key)]


def reads_remasker(sampler, mode):
    """Whether this sampler / mode reads a separate remasking model's scores (else it is never loaded)."""
    return sampler == 'diffusion' and mode != 'random'


# -----------------------------------------------------------------------------
# checkpoints

def find_checkpoint(out_dir, name, kinds, trust_pickle=False):
    """A file name is looked up in out_dir; a name with a folder in it is a path as it stands.
    No name (or 'newest'): the newest checkpoint of the first of `kinds` (one kind or a tuple) that
    out_dir has. `trust_pickle`: the trust_checkpoint_pickle key, for a ckpt.pt opened to learn its kind."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if name in (None, '', 'newest'):
        path = next(filter(None, (newest_checkpoint(out_dir, kind, trust_pickle) for kind in kinds)), None)
        if path is None:
            raise UserError(f"no {' or '.join(kinds)} checkpoint found; {describe_out_dir(out_dir)}")
        return path
    return name if os.path.dirname(name) else os.path.join(out_dir, name)


def load_unmasking_checkpoint(cfg):
    """(path, checkpoint) of the model that fills [MASK]: an unmasking or a merged one. Without a
    checkpoint_name: the newest unmasking checkpoint in out_dir, else the newest merged one."""
    path = find_checkpoint(cfg.out_dir, cfg.checkpoint_name, UNMASKING_TYPES, cfg.trust_checkpoint_pickle)
    ckpt = load_checkpoint(path, trust_pickle=cfg.trust_checkpoint_pickle)
    kind = ckpt.get('training_type')
    if kind not in UNMASKING_TYPES:
        fix = ("pass it as remasking_checkpoint_name" if kind == 'remasking'
               else "sample.py generates with unmasking (diffusion) or merged models")
        raise UserError(f"{path} is a {kind!r} model, not an unmasking model; {fix}")
    return path, ckpt


def refuse_second_remasker(cfg, path, ckpt):
    """A merged unmasking checkpoint scores [WRONG] itself: a separate remasking model beside it is an error."""
    if cfg.remasking_checkpoint_name and ckpt.get('training_type') == 'merged':
        raise UserError(f"{path} is a merged model: it gives the [WRONG] probabilities itself, in the same forward "
                        f"pass that fills the masks; drop remasking_checkpoint_name={cfg.remasking_checkpoint_name!r}"
                        f" (or pass an unmasking model as checkpoint_name to use that remasker)")


def load_remasking_checkpoint(cfg, path=None, ckpt=None):
    """(path, checkpoint) of the separate remasking model, or (None, None) when none is asked for.
    `path`, `ckpt`: the unmasking checkpoint (see refuse_second_remasker)."""
    if ckpt is not None:
        refuse_second_remasker(cfg, path, ckpt)
    if not cfg.remasking_checkpoint_name:
        return None, None
    rpath = find_checkpoint(cfg.remasking_out_dir or cfg.out_dir, cfg.remasking_checkpoint_name, 'remasking',
                            cfg.trust_checkpoint_pickle)
    rckpt = load_checkpoint(rpath, trust_pickle=cfg.trust_checkpoint_pickle)
    kind = rckpt.get('training_type')
    if kind == 'merged':
        raise UserError(f"remasking_checkpoint_name {rpath} is a merged model; pass it as checkpoint_name instead: "
                        f"it fills and scores in one forward pass per iteration")
    if kind != 'remasking':
        raise UserError(f"remasking_checkpoint_name {rpath} is a {kind!r} model, "
                        f"not a remasking model (train one with training_type='remasking')")
    return rpath, rckpt


def resolve_sequence_length(cfg, *checkpoints):
    """Settle cfg.sequence_length: None becomes the smallest block size of the checkpoints in use."""
    block_sizes = [c['model_args']['block_size'] for c in checkpoints if c is not None]
    cfg['sequence_length'] = cfg.sequence_length or min(block_sizes)
    if not isinstance(cfg.sequence_length, int) or cfg.sequence_length < 2:
        raise UserError(f"sequence_length={cfg.sequence_length!r} must be an integer >= 2 (or None for the block size)")
    return cfg.sequence_length


def check_pair(path, ckpt, rpath, rckpt, length):
    """The two models must share the vocabulary and both see `length` characters."""
    for p, c in ((path, ckpt), (rpath, rckpt)):
        problem = fit_problem(c, min_block_size=length) if c is not None else None
        if problem:
            raise UserError(f"sequence_length={length} does not fit {p}: {problem}; lower sequence_length")
    problem = fit_problem(rckpt, stoi=ckpt['meta']['stoi']) if rckpt is not None else None
    if problem:
        raise UserError(f"{path} (dataset {ckpt['meta'].get('dataset')!r}) and {rpath} (dataset "
                        f"{rckpt['meta'].get('dataset')!r}) do not share a vocabulary: {problem}; "
                        f"use two models trained on the same corpus")


def load_forward(checkpoint, device, ctx, compile=False):
    """The Forward of a checkpoint's model on `device`; None for no checkpoint."""
    if checkpoint is None:
        return None
    model = model_from_checkpoint(checkpoint, device=device)
    return Forward(torch.compile(model) if compile else model, ctx)
