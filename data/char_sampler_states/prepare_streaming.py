"""
CharSamplerStatesProvider: the texts a diffusion sampler really produces, with the original as labels.

A remasking model judges, at sampling time, drafts that an unmasking model *sampled* (at the sampling
temperature) at the mask levels of the remasking schedule, after several iterations; a merged model
also reads such drafts with some positions still [MASK]. This provider makes exactly those states
from clean windows, with the newest checkpoint of a watched run (data/checkpoint_follower.py):

1. every row draws its mask level r uniformly from `fill_ratio_range` (e.g. the remasking
   schedule's end_ratio..start_ratio);
2. `fill_iterations` times: round(r * block_size) positions, chosen at random, become [MASK] and the
   model fills them with a sample at `fill_temperature` (sampling_utils.sample_tokens, as sample.py
   draws; [MASK] and [WRONG] are never drawn), reading the row as it is now, its earlier fills
   (right or wrong) included: the first pass fills clean context, later passes remask at random
   and fill again, as sample.py's random remasking does;
3. every row draws a share m from `left_masked_ratio_range` and round(m * block_size) random
   positions are put back to [MASK]: what a merged model reads mid-generation (0: none, the
   remasker's input).

x is that state, y the clean window (full targets): train.py derives [WRONG] wherever a visible
character differs from the original (remasking, and merged), and the original at [MASK] (merged).
Before the run has a usable checkpoint, fallback_to_random=True fills with random characters (the
file's info, its log line and the heartbeat say so); with False the provider waits for one.
See docs/inference_replacement.md.
"""

import torch

from common import UserError
from data import checkpoint_follower
from data.corruption import format_min_max, min_max
from prepare_streaming import DataProviderBase
from sampling_utils import select_random


def ratio_range(cfg, key):
    """(low, high) with 0 <= low <= high <= 1, or UserError naming the key."""
    value = cfg[key]
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1] <= 1):
        raise UserError(f"{key} must be (low, high) with 0 <= low <= high <= 1, got {value!r}")
    return float(value[0]), float(value[1])


def row_counts(share_range, n_rows, block_size, generator):
    """(N,) long: round(share * block_size) positions per row, the share uniform in `share_range`."""
    low, high = share_range
    share = low + (high - low) * torch.rand(n_rows, generator=generator, dtype=torch.float64)  # (N,)
    return (share * block_size).round().long()


def row_stats(clean, x, filled, last_fill, left):
    """(min, max) over the rows of a file (see summary_line) of: the row's mask level, the visible
    characters that differ from the original, the [MASK] left, and the share of the last pass's
    fills that differ from the original."""
    T = clean.shape[1]
    fill_counts = last_fill.sum(1)  # (N,)
    fill_errors = (last_fill & (filled != clean)).sum(1)  # (N,)
    has_fill = fill_counts > 0
    return dict(fill=min_max(fill_counts / T), wrong=min_max(((x != clean) & ~left).sum(1) / T),
                masked=min_max(left.sum(1) / T), fill_error=min_max(fill_errors[has_fill] / fill_counts[has_fill]))


class CharSamplerStatesProvider(DataProviderBase):
    DEFAULTS = {
        **checkpoint_follower.DEFAULTS,
        'fill_ratio_range': (0.1, 1.0),         # each row's mask level r, uniform in this range
        'fill_iterations': 1,                    # passes: mask round(r * block_size) random positions, fill them
        'fill_temperature': 1.0,                 # fills are samples at this temperature (0: argmax)
        'left_masked_ratio_range': (0.0, 0.0),  # share of each row put back to [MASK] at the end (merged models)
    }

    # -------------------------------------------------------------------------
    # config and meta

    def configure(self):
        cfg = self.cfg
        self.fill_range = ratio_range(cfg, 'fill_ratio_range')
        self.left_range = ratio_range(cfg, 'left_masked_ratio_range')
        if not isinstance(cfg['fill_iterations'], int) or cfg['fill_iterations'] < 1:
            raise UserError(f"fill_iterations must be a positive integer, got {cfg['fill_iterations']!r}")
        temperature = cfg['fill_temperature']
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise UserError(f"fill_temperature must be >= 0 (0: argmax), got {temperature!r}")
        self.follower = checkpoint_follower.CheckpointFollower(cfg, self.vocab, self.dataset, temperature=temperature,
                                                               fallback_name='the fills', log=self.log)
        self.predictor = self.follower.predictor

    def fingerprint_exclude(self):
        return checkpoint_follower.RUN_ONLY_KEYS

    def data_config(self):
        return {**super().data_config(), **self.follower.data_config()}

    def corruption_meta(self):
        cfg = self.cfg
        knobs = dict(fill_ratio_range=self.fill_range, fill_iterations=cfg['fill_iterations'],
                     fill_temperature=cfg['fill_temperature'], left_masked_ratio_range=self.left_range,
                     **self.follower.meta())
        # mixture_has_mask: x holds [MASK] (check_queue_fits: a merged queue, not a remasking one)
        return dict(label_semantics='full', val_label_semantics='full', corruption_type='sampler_states',
                    corruption=knobs, mixture_has_mask=self.left_range[1] > 0,
                    unmasking_stages=None, validation_stages=None)

    # -------------------------------------------------------------------------
    # rows

    def make_rows(self, split, clean, generator):
        # one model per file: pick up a newer checkpoint (throttled) before the file, not during it
        source = self.follower.start_file()
        filled, last_fill = self.fill_passes(clean, generator)
        left = select_random(torch.ones_like(last_fill), row_counts(self.left_range, *clean.shape, generator),
                             generator)  # (N, T) put back to [MASK]
        x = filled.masked_fill(left, self.vocab['mask_token_id'])  # (N, T)
        return {'x': x, 'y': clean}, dict(row_stats(clean, x, filled, last_fill, left), checkpoint=source)

    def fill_passes(self, clean, generator):
        """(the rows after fill_iterations passes (N, T), the positions (N, T) the last pass filled)."""
        N, T = clean.shape
        every = torch.ones(N, T, dtype=torch.bool)
        fill_counts = row_counts(self.fill_range, N, T, generator)  # (N,) the row's mask level, every pass
        state = clean.clone()  # (N, T)
        for _ in range(self.cfg['fill_iterations']):
            masked = select_random(every, fill_counts, generator)  # (N, T) a fresh random choice each pass
            model_input = state.masked_fill(masked, self.vocab['mask_token_id'])  # (N, T) what the model reads
            self.follower.fill(state, clean, model_input, masked, generator)
        return state, masked

    # -------------------------------------------------------------------------
    # what the log line, each file and the heartbeat say

    def summary_line(self, stats):
        """fill: the row's mask level; wrong: visible characters that differ from the original;
        masked: [MASK] left in x; fill error: the share of the last pass's fills that differ from the
        original (the model's error rate at the row's mask level: it falls as the model learns)."""
        shares = ', '.join(f"{name} min/max={format_min_max(stats[key])}" for key, name in
                           (('fill', 'fill'), ('wrong', 'wrong'), ('masked', 'masked'), ('fill_error', 'fill error')))
        return f"{self.log_prefix()} sampler states: {shares}, {self.follower.describe(stats['checkpoint'])}"

    def file_info_extras(self):
        return self.follower.file_info()

    def heartbeat_extras(self):
        return self.follower.heartbeat_extras()

    def wait_until_ready(self):
        return self.follower.wait_until_ready(self)


Provider = CharSamplerStatesProvider
